"""Resources and runs over the real asset graph, for tests: tiny models, a real S3 bucket, a real Dagster instance."""

from pathlib import Path

import dagster as dg

from memo_pipelines.orchestration.definitions import ASSETS, build_definitions
from memo_pipelines.storage.objectstore import ObjectStore
from resources import EvaluationResource, GeneratorResource, ModelRegistryResource, ObjectStoreResource, TrainerResource
from tests.conftest import CREDENTIALS

# the tiny model memorises in a few hundred steps of a few milliseconds each
TINY_GATES = dict(min_new_version_probes=1, min_heldout_recall=0.0, max_forgetting=1.0, min_abstention=0.0, max_general_drop=100.0, general_size=20,
                  executive_backend="none")
# general_mix 0.1: a random base's own "answers" to generic questions are long random strings that take a 2-layer model's
# capacity; 0.1 keeps them in every training set (the path is exercised) without drowning the facts
TINY_TRAINER = dict(lora_r=16, lora_alpha=32, learning_rate=5e-3, epochs=30, batch_size=8, replay_size=64, merge_method="ties", merge_density=0.9,
                    general_mix=0.1)


def pipeline_resources(store: ObjectStore, work_dir: Path, base_dir: Path, trainer: dict | None = None, evaluation: dict | None = None,
                       s3_max_attempts: int = 8) -> dict:
    object_store = ObjectStoreResource(
        max_attempts=s3_max_attempts,
        bucket=store.bucket,
        endpoint_url=store.client.meta.endpoint_url,
        access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )
    return {
        "object_store": object_store,
        "registry": ModelRegistryResource(object_store=object_store, work_dir=str(work_dir), base_model=str(base_dir)),
        "generator": GeneratorResource(),
        "trainer": TrainerResource(**{**TINY_TRAINER, **(trainer or {})}),
        # a random tiny base cannot answer reworded probes, decline unseen entities or know general facts, so those
        # gates are open here (tests/test_gates.py shows each catching a real regression); training-row recall is reported
        "evaluation": EvaluationResource(**{**TINY_GATES, **(evaluation or {})}),
    }


def run_sensor(defs: dg.Definitions, instance: dg.DagsterInstance, resources: dict, cursor: str | None):
    """One sensor tick, with its partition requests applied to the instance the way the daemon applies them."""
    sensor = defs.resolve_sensor_def("landing_sensor")
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"object_store": resources["object_store"]}, definitions=defs)
    result = sensor(context)
    if isinstance(result, dg.SensorResult):
        for request in result.dynamic_partitions_requests or []:
            instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    return result


def materialize_version(instance: dg.DagsterInstance, resources: dict, version: str) -> dg.ExecuteInProcessResult:
    return dg.materialize(ASSETS, partition_key=version, resources=resources, instance=instance, raise_on_error=False)


def definitions(resources: dict) -> dg.Definitions:
    return build_definitions(resources=resources)


def reconstructable_job(spec_json: str) -> dg.JobDefinition:
    """The pipeline as a job, in process, over resources described by spec_json; for dg.execute_job, which re-execution
    from failure needs: dg.build_reconstructable_job("tests.pipeline_helpers", "reconstructable_job", (spec_json,)).
    """
    import json

    from memo_pipelines.storage.objectstore import make_s3_client

    spec = json.loads(spec_json)
    client = make_s3_client(spec["endpoint_url"], CREDENTIALS["AWS_ACCESS_KEY_ID"], CREDENTIALS["AWS_SECRET_ACCESS_KEY"])
    resources = pipeline_resources(ObjectStore(client, spec["bucket"]), Path(spec["work_dir"]), Path(spec["base_dir"]), spec.get("trainer"),
                                   spec.get("evaluation"), spec.get("s3_max_attempts", 8))
    if spec.get("generator"):
        resources["generator"] = GeneratorResource(**spec["generator"])
    names = spec.get("assets") or [a.key.path[-1] for a in ASSETS]
    job = dg.define_asset_job("memo_test_job", selection=dg.AssetSelection.assets(*names), executor_def=dg.in_process_executor)
    return dg.Definitions(assets=ASSETS, jobs=[job], resources=resources).resolve_job_def("memo_test_job")
