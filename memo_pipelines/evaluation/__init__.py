"""Evaluation of a candidate memory and the gates that decide its promotion."""
