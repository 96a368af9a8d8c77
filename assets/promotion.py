import dagster as dg

from assets.evaluation import memory_eval
from assets.partitions import VERSION_ASSET
from assets.retries import FLAKY_STEP_RETRY
from resources import ModelRegistryResource


class PromotionConfig(dg.Config):
    # a backfilled version never moves the pointer off a newer version's model unless this is set for its run
    allow_backfill_promotion: bool = False


@dg.asset(**VERSION_ASSET, deps=[memory_eval], kinds={"s3"}, retry_policy=FLAKY_STEP_RETRY,
          description="Moves the registry's promoted pointer to this version's candidate, only when every gate passed "
                      "and no newer version's model is promoted (unless allow_backfill_promotion).")
def promoted_memory(context: dg.AssetExecutionContext, config: PromotionConfig, registry: ModelRegistryResource) -> dg.MaterializeResult:
    models = registry.workspace().registry
    outcome = models.promote_version(context.partition_key, config.allow_backfill_promotion)
    context.log.info(outcome["reason"] if not outcome["promoted"] else f"promoted {outcome['model_id']} (was {outcome['current']})")
    return dg.MaterializeResult(
        metadata={
            "promoted": outcome["promoted"],
            "reason": outcome["reason"],
            "candidate_model": outcome["model_id"],
            "promoted_model": models.promoted_id(),
            "previous_model": outcome["current"] or "",
            "trained_on": outcome["parent"],
        }
    )
