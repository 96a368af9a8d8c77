import json

import dagster as dg

from memo_pipelines.corpus.landing import diff_landing, fold_uncommitted, load_cursor, manifest, next_version_key, save_cursor
from assets.partitions import corpus_versions
from memo_pipelines.orchestration.failures import clear_failure, record_failure
from memo_pipelines.storage.history import stranded_documents
from memo_pipelines.storage.layout import version_key
from resources import ObjectStoreResource


def version_run(version: str) -> dg.RunRequest:
    # run_key = version: a re-tick, or a tick recovered after a crash, never launches the same version twice
    return dg.RunRequest(run_key=version, partition_key=version, tags={"memo/version": version})


def build_landing_sensor(job: dg.JobDefinition, landing_prefix: str, interval_s: int = 15) -> dg.SensorDefinition:
    @dg.sensor(
        name="landing_sensor",
        job=job,
        minimum_interval_seconds=interval_s,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Turns documents that land under, or are deleted from, '{landing_prefix}' into a new corpus version and runs the pipeline on it.",
    )
    def landing_sensor(context: dg.SensorEvaluationContext, object_store: ObjectStoreResource) -> dg.SensorResult | dg.SkipReason:
        store = object_store.store()
        cursor = load_cursor(store, context.cursor)
        existing = context.instance.get_dynamic_partitions(corpus_versions.name)
        uncommitted = {v: m for v in existing if v > cursor.last_version
                       if (m := store.get_json(version_key(v, "manifest.json"))) is not None}
        if uncommitted:
            context.log.warning(f"recovering versions whose tick was not committed: {sorted(uncommitted)}")
            cursor = fold_uncommitted(cursor, uncommitted)
        diff = diff_landing(list(store.list_objects(landing_prefix)), cursor)
        runs = [version_run(v) for v in sorted(uncommitted)]
        # a deletion is a version of its own: the update that follows takes the document's facts out of the served memory
        if not (diff.new_or_changed or diff.deleted):
            if not uncommitted:
                return dg.SkipReason(f"no new, changed or deleted documents under {landing_prefix}")
            return dg.SensorResult(run_requests=runs, cursor=save_cursor(store, diff.seen, [], cursor.last_version, context.cursor))
        version = next_version_key(existing)
        # written before the partition exists; a tick that dies here leaves a manifest the next tick rewrites
        written = manifest(version, diff, stranded_documents(store))
        store.put_json(version_key(version, "manifest.json"), written)
        carried = len(written["objects"]) - len(diff.new_or_changed)
        context.log.info(f"version {version}: {len(diff.new_or_changed)} new or changed documents, {len(diff.deleted)} deleted"
                         + (f", {carried} carried from failed versions" if carried else ""))
        return dg.SensorResult(
            run_requests=runs + [version_run(version)],
            dynamic_partitions_requests=[corpus_versions.build_add_request([version])],
            cursor=save_cursor(store, diff.seen, [], version, context.cursor),
        )

    return landing_sensor


def run_version(run: dg.DagsterRun) -> str | None:
    return run.tags.get("memo/version") or run.tags.get("dagster/partition")


def for_version(run: dg.DagsterRun, act) -> dg.SkipReason | None:
    """act(version, run) for a run of a corpus version; a run that names none is skipped."""
    version = run_version(run)
    if not version:
        return dg.SkipReason(f"run {run.run_id} names no corpus version")
    act(version, run)
    return None


def error_text(error) -> str:
    """The innermost cause of a step's error (the user's exception, not Dagster's wrappers), in one short paragraph."""
    while error is not None and error.cause is not None:
        error = error.cause
    return (error.message.strip() if error else "")[:2000]


def retry_commands(run: dg.DagsterRun, job_name: str) -> dict:
    version = run_version(run)
    tags = {"dagster/partition": version, "memo/version": version}
    return {
        "ui": f"Dagster UI: Runs > {run.run_id} > Re-execute > From failure (reruns the failed steps and those after them)",
        "cli": f"dagster job launch -w workspace.yaml -j {job_name} --tags '{json.dumps(tags)}' (a whole new run of the version)",
    }


def build_failure_sensors(job_name: str, interval_s: int = 15) -> list[dg.SensorDefinition]:
    """A run-failure sensor that records each failed version in the bucket (versions/{v}/failure.json: the steps, their
    errors, how to retry) for memo status, and a run-success sensor that clears the record once a run of that version
    succeeded in the steps that had failed."""

    @dg.run_failure_sensor(name="failure_sensor", minimum_interval_seconds=interval_s, default_status=dg.DefaultSensorStatus.RUNNING,
                           description="Records each failed version's run in the bucket (step, error, how to retry) for memo status.")
    def failure_sensor(context: dg.RunFailureSensorContext, object_store: ObjectStoreResource):
        def record(version: str, run: dg.DagsterRun) -> None:
            steps = [{"step": event.step_key, "error": error_text(event.step_failure_data.error)} for event in context.get_step_failure_events()]
            record_failure(object_store.store(), version, run.run_id, steps, context.failure_event.message or "", retry_commands(run, job_name))
            context.log.info(f"version {version}: run {run.run_id} failed at {[s['step'] for s in steps] or 'the run level'}")

        return for_version(context.dagster_run, record)

    @dg.run_status_sensor(run_status=dg.DagsterRunStatus.SUCCESS, name="recovery_sensor", minimum_interval_seconds=interval_s,
                          default_status=dg.DefaultSensorStatus.RUNNING,
                          description="Clears a version's failure record once a run of it succeeded in the steps that had failed.")
    def recovery_sensor(context: dg.RunStatusSensorContext, object_store: ObjectStoreResource):
        def clear(version: str, run: dg.DagsterRun) -> None:
            succeeded = {stats.step_key for stats in context.instance.get_run_step_stats(run.run_id) if stats.status and stats.status.value == "SUCCESS"}
            if clear_failure(object_store.store(), version, succeeded):
                context.log.info(f"version {version}: run {run.run_id} succeeded; its failure record is cleared")

        return for_version(context.dagster_run, clear)

    return [failure_sensor, recovery_sensor]
