"""The code location: one Definitions, built by a function from an environment name (LOCAL by default)."""

from enum import Enum

import dagster as dg

from assets.corpus import corpus_snapshot, passages
from assets.evaluation import memory_eval
from assets.memory import memory_adapter, memory_model
from assets.promotion import promoted_memory
from assets.reflections import heldout_probes, reflections
from memo_pipelines.storage.layout import LANDING_PREFIX
from memo_pipelines.orchestration.sensors import build_failure_sensors, build_landing_sensor
from resources import EvaluationResource, GeneratorResource, ModelRegistryResource, ObjectStoreResource, TrainerResource

ASSETS = [corpus_snapshot, passages, reflections, heldout_probes, memory_adapter, memory_model, memory_eval, promoted_memory]


class Environment(str, Enum):
    LOCAL = "local"
    PROD = "prod"


# the local bundle trains on CPU: on 2 cores an update of this many 135M steps takes about 10 minutes with its early-stop
# checks, whatever the version's size; production trains on GPUs and ends on the data and early stopping alone
LOCAL_TRAINING_STEPS = 128


def resources_for(environment: Environment) -> dict:
    """Resources per environment; every secret and address comes from the environment at run time (EnvVar)."""
    object_store = ObjectStoreResource(
        bucket=dg.EnvVar("MEMO_BUCKET"),
        endpoint_url=dg.EnvVar("MEMO_S3_ENDPOINT") if environment == Environment.LOCAL else None,
        access_key_id=dg.EnvVar("AWS_ACCESS_KEY_ID") if environment == Environment.LOCAL else None,
        secret_access_key=dg.EnvVar("AWS_SECRET_ACCESS_KEY") if environment == Environment.LOCAL else None,
    )
    generator = (
        GeneratorResource()
        if environment == Environment.LOCAL
        else GeneratorResource(backend="openai", model=dg.EnvVar("MEMO_GENERATOR_MODEL"), base_url=dg.EnvVar("MEMO_GENERATOR_BASE_URL"))
    )
    return {
        "object_store": object_store,
        "registry": ModelRegistryResource(object_store=object_store, work_dir=dg.EnvVar("MEMO_WORK_DIR")),
        "generator": generator,
        "trainer": TrainerResource(max_steps=LOCAL_TRAINING_STEPS) if environment == Environment.LOCAL else TrainerResource(),
        "evaluation": EvaluationResource(),
    }


memo_job = dg.define_asset_job(
    "memo_pipeline",
    selection=dg.AssetSelection.assets(*ASSETS),
    description="One corpus version from snapshot to promoted memory model.",
)


def build_definitions(environment: Environment = Environment.LOCAL, resources: dict | None = None, landing_prefix: str = LANDING_PREFIX,
                      executor: dg.ExecutorDefinition | None = None) -> dg.Definitions:
    return dg.Definitions(
        assets=ASSETS,
        jobs=[memo_job],
        sensors=[build_landing_sensor(memo_job, landing_prefix), *build_failure_sensors(memo_job.name)],
        resources=resources if resources is not None else resources_for(environment),
        executor=executor,
    )


defs = build_definitions()
