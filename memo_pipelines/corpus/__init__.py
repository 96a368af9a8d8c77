"""From landed objects to a corpus version (corpus/reading.py, stage 1): the landing diff, per-format readers, the
snapshot, near-duplicate detection."""
