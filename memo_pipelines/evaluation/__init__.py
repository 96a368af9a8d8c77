"""Scoring a candidate memory (evaluation/candidate.py, stage 5): its report card over the held-out probes, the
general-ability guard, users' own evaluation sets, and the gates that decide its promotion. Probes are written by
the synthesis (reflections/probes.py); this package only scores."""
