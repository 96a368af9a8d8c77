import dagster as dg

from memo_pipelines.corpus.landing import diff_landing, fold_uncommitted, load_cursor, manifest, next_version_key, save_cursor
from memo_pipelines.orchestration.partitions import corpus_versions
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
        description=f"Turns documents that land under '{landing_prefix}' into a new corpus version and runs the pipeline on it.",
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
        if not diff.new_or_changed:
            if not (diff.deleted or uncommitted):
                return dg.SkipReason(f"no new documents under {landing_prefix}")
            if diff.deleted:
                context.log.info(f"{len(diff.deleted)} deletions wait for the next version's manifest: {diff.deleted[:10]}")
            return dg.SensorResult(run_requests=runs, cursor=save_cursor(store, diff.seen, diff.deleted, cursor.last_version, context.cursor))
        version = next_version_key(existing)
        # written before the partition exists; a tick that dies here leaves a manifest the next tick rewrites
        store.put_json(version_key(version, "manifest.json"), manifest(version, diff))
        context.log.info(f"version {version}: {len(diff.new_or_changed)} new or changed documents, {len(diff.deleted)} deleted")
        return dg.SensorResult(
            run_requests=runs + [version_run(version)],
            dynamic_partitions_requests=[corpus_versions.build_add_request([version])],
            cursor=save_cursor(store, diff.seen, [], version, context.cursor),
        )

    return landing_sensor
