import dagster as dg

from memo_pipelines.landing import diff_landing, dump_cursor, manifest, next_version_key, parse_cursor
from memo_pipelines.partitions import corpus_versions
from resources import ObjectStoreResource


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
        diff = diff_landing(list(store.list_objects(landing_prefix)), parse_cursor(context.cursor))
        if not diff.new_or_changed:
            if diff.deleted:
                context.log.info(f"{len(diff.deleted)} deletions wait for the next version's manifest: {diff.deleted[:10]}")
                return dg.SensorResult(cursor=dump_cursor(diff.seen, diff.deleted))
            return dg.SkipReason(f"no new documents under {landing_prefix}")
        version = next_version_key(context.instance.get_dynamic_partitions(corpus_versions.name))
        # the manifest is written before the partition exists; a failed tick rewrites the same key with the same content
        store.put_json(f"versions/{version}/manifest.json", manifest(version, diff))
        context.log.info(f"version {version}: {len(diff.new_or_changed)} new or changed documents")
        return dg.SensorResult(
            run_requests=[dg.RunRequest(run_key=version, partition_key=version, tags={"memo/version": version})],
            dynamic_partitions_requests=[corpus_versions.build_add_request([version])],
            cursor=dump_cursor(diff.seen),
        )

    return landing_sensor
