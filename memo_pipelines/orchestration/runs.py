"""What the Dagster instance knows of runs, for `memo status`."""


def run_statuses(dagster_home: str | None) -> dict[str, str]:
    """The latest Dagster run's status per version tag, when a local instance is at hand."""
    if not dagster_home:
        return {}
    import dagster as dg

    instance = dg.DagsterInstance.from_config(dagster_home)
    latest: dict[str, str] = {}
    for run in reversed(instance.get_runs(limit=500)):  # newest first, so reversed: the newest run wins
        version = run.tags.get("memo/version") or run.tags.get("dagster/partition")
        if version:
            latest[version] = run.status.value
    return latest
