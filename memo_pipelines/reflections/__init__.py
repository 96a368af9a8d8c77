"""Reflection synthesis: the five steps over a version's documents, their text rules, and the dataset's expectations."""
