import dagster as dg

from assets.evaluation import memory_eval
from memo_pipelines.partitions import corpus_versions
from memo_pipelines.pipeline import promote_version
from resources import ModelRegistryResource


@dg.asset(partitions_def=corpus_versions, deps=[memory_eval], kinds={"s3"}, group_name="memo",
          description="Moves the registry's promoted pointer to this version's candidate, only when every gate passed.")
def promoted_memory(context: dg.AssetExecutionContext, registry: ModelRegistryResource) -> dg.MaterializeResult:
    entry = promote_version(registry.workspace(), context.partition_key)
    context.log.info(f"promoted {entry['model_id']} (was {entry['parent']})")
    return dg.MaterializeResult(metadata={"promoted_model": entry["model_id"], "previous_model": entry["parent"]})
