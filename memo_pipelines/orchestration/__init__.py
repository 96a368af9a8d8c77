"""The Dagster code location: definitions, the landing and failure sensors, executors, run records. With assets/ and
resources/, the only code that imports dagster; the partitions and retry policy live in assets/ so that both the
assets and these definitions import them without a loop."""
