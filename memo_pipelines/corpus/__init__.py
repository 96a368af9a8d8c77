"""From landed objects to a corpus version: the landing diff, per-format readers, the snapshot, near-duplicate detection."""
