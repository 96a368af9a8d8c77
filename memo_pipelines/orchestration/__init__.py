"""The Dagster code location: definitions, partitions, the landing sensor, executors. The only package that imports dagster."""
