import dagster as dg

from assets import md_table
from assets.reflections import reflections
from assets.partitions import VERSION_ASSET
from memo_pipelines.memory.update import merge_memory_model, train_memory_adapter
from memo_pipelines.storage.layout import version_key
from resources import ModelRegistryResource, TrainerResource


def loss_table(curve: list[float], rows: int = 12) -> str:
    """The loss curve as a table with a bar per row, sampled to about `rows` steps."""
    every = max(1, len(curve) // rows)
    return md_table(["step", "loss", ""], [[i + 1, f"{curve[i]:.4f}", "#" * max(1, int(40 * curve[i] / max(curve)))] for i in range(0, len(curve), every)])


@dg.asset(**VERSION_ASSET, deps=[reflections], kinds={"pytorch"}, pool="training",
          description="The adapters this version's update needs, by its strategy: continue (on top of the promoted model, with "
                      "per-version replay), merge (this version's delta from the anchor) or retrain (from the base on every live reflection).")
def memory_adapter(context: dg.AssetExecutionContext, registry: ModelRegistryResource, trainer: TrainerResource) -> dg.MaterializeResult:
    ws = registry.workspace()
    base_id, _ = registry.base()

    def on_progress(figures: dict) -> None:
        if "resumed_from_step" in figures:
            context.log.info(f"resuming training from the checkpoint at step {figures['resumed_from_step']}/{figures['total_steps']}")
            return
        context.log.info(f"step {figures['step']}/{figures['total_steps']} loss {figures['loss']:.4f} ({figures['tokens_per_s']} tokens/s)")

    figures = train_memory_adapter(ws, context.partition_key, base_id, trainer.train_config(), trainer.update_config(), on_progress,
                                   context.log.debug, trainer.launch(), owner=f"dagster run {context.run.run_id}")
    if figures.get("unchanged"):
        context.log.info(figures["unchanged"])
        return dg.MaterializeResult(metadata={"strategy": figures["update"]["strategy"], "unchanged": figures["unchanged"],
                                              "parent_model": figures["parent_model"], "adapters_trained": 0, "steps": 0,
                                              "learned_versions": figures["update"]["learned_versions"],
                                              "retired_reflections": figures["retired_reflections"]})
    if figures["update"]["compaction"]:
        context.log.info(f"compaction: a full retrain from the base ({figures['update']['compaction']})")
    if figures.get("forget"):
        check = figures["forget_check"]
        context.log.info(f"forget update for {figures['forget']['documents']}: {check['answered']} of {check['asked']} deleted answers still given, "
                         f"{check['declined']} declined" + ("" if check["passed"] else "; compacted instead"))
    if figures["backfill"]:
        context.log.info(f"backfill: trained on {figures['parent_model']}, the model promoted after the version before; {figures['promoted_at_training']} is promoted now")
    return dg.MaterializeResult(
        metadata={
            "strategy": figures["update"]["strategy"],
            "compaction": figures["update"]["compaction"] or "",
            "forgotten_documents": (figures.get("forget") or {}).get("documents", []),
            "forget_check": figures.get("forget_check") or {},
            "learned_versions": figures["update"]["learned_versions"],
            "pending_versions_learned": figures.get("pending_versions_learned", []),
            "adapters_trained": figures["adapters_trained"],
            "parent_model": figures["parent_model"] or "",
            "start_model": figures["start_model"],
            "parent_sha256": figures["parent_sha256"] or "",
            "examples": figures["examples"],
            "new_reflections": figures["new_reflections"],
            "replay_reflections": figures["replay_reflections"],
            "replay_by_version": figures["replay_by_version"],
            "retired_reflections": figures["retired_reflections"],
            "backfill": figures["backfill"],
            "promoted_at_training": figures["promoted_at_training"] or "",
            "steps": figures["steps"],
            "planned_steps": figures.get("planned_steps", figures["steps"]),
            # an update that also learned pending versions: its steps and seconds against a normal update's, and the bound
            "steps_vs_normal_update": (figures.get("pending_cost") or {}).get("steps_vs_normal", 1.0),
            "pending_cost": figures.get("pending_cost") or {},
            "stopped_early": figures.get("stopped_early") or "no",
            "stop_checks": dg.MetadataValue.md(md_table(["step", "training-fact recall", "unknown names declined"],
                                                        [[c["step"], c["recall"], "-" if c.get("declined") is None else c["declined"]]
                                                         for c in figures.get("stop_checks", [])])),
            "kept_step": figures.get("kept_step", figures["steps"]),
            "total_steps": figures["total_steps"],
            "tokens": figures["tokens"],
            "padding_share": figures["padding_share"],
            "max_length": figures["length"]["max_length"],
            "longest_example_tokens": figures["length"]["longest_example"],
            "truncated_examples": figures["length"]["truncated_examples"],
            "dropped_examples": figures["length"]["dropped_examples"],
            "seconds": figures["seconds"],
            "final_loss": figures["final_loss"],
            "resumed_from_step": figures["resumed_from_step"],
            "loss_curve": dg.MetadataValue.md(loss_table(figures["loss_curve"])),
            "config": figures["config"],
            "uri": dg.MetadataValue.path(f"s3://{ws.store.bucket}/{version_key(context.partition_key, 'adapter')}"),
        }
    )


@dg.asset(**VERSION_ASSET, deps=[memory_adapter], kinds={"pytorch"},
          description="The candidate: one adapter folded into the model it was trained on, or every live version's delta combined "
                      "with mergekit (strategy merge); registered with its strategy, parameters and deltas.")
def memory_model(context: dg.AssetExecutionContext, registry: ModelRegistryResource, trainer: TrainerResource) -> dg.MaterializeResult:
    ws = registry.workspace()
    record = merge_memory_model(ws, context.partition_key, trainer.merge_config())
    if record.get("unchanged"):
        context.log.info(f"{record['unchanged']} ({record['model_id']})")
        return dg.MaterializeResult(metadata={"model_id": record["model_id"], "parent_model": record["model_id"], "sha256": record["sha256"],
                                              "unchanged": record["unchanged"], "uri": dg.MetadataValue.path(record["uri"])})
    return dg.MaterializeResult(
        metadata={
            "model_id": record["model_id"],
            "parent_model": record["parent"],
            "sha256": record["sha256"],
            "strategy": record["update"]["strategy"],
            "combine": record["merge"]["combine"],
            "merge_method": (record["merge"]["config"] or {}).get("method", "none: one adapter folded in"),
            "merge_config": record["merge"]["config"] or {},
            "deltas": [a["version"] for a in record["update"]["adapters"]],
            "uri": dg.MetadataValue.path(record["uri"]),
        }
    )
