import dagster as dg

from assets import md_table
from assets.reflections import reflections
from memo_pipelines.orchestration.partitions import corpus_versions
from memo_pipelines.pipeline import merge_memory_model, train_memory_adapter
from memo_pipelines.storage.layout import version_key
from resources import ModelRegistryResource, TrainerResource


def loss_table(curve: list[float], rows: int = 12) -> str:
    """The loss curve as a table with a bar per row, sampled to about `rows` steps."""
    every = max(1, len(curve) // rows)
    return md_table(["step", "loss", ""], [[i + 1, f"{curve[i]:.4f}", "#" * max(1, int(40 * curve[i] / max(curve)))] for i in range(0, len(curve), every)])


@dg.asset(partitions_def=corpus_versions, deps=[reflections], kinds={"pytorch"}, group_name="memo", pool="training",
          description="LoRA adapter trained on this version's reflections plus replay, on top of the promoted memory model.")
def memory_adapter(context: dg.AssetExecutionContext, registry: ModelRegistryResource, trainer: TrainerResource) -> dg.MaterializeResult:
    ws = registry.workspace()
    base_id, _ = registry.base()

    def on_progress(figures: dict) -> None:
        if "resumed_from_step" in figures:
            context.log.info(f"resuming training from the checkpoint at step {figures['resumed_from_step']}/{figures['total_steps']}")
            return
        context.log.info(f"step {figures['step']}/{figures['total_steps']} loss {figures['loss']:.4f} ({figures['tokens_per_s']} tokens/s)")

    figures = train_memory_adapter(
        ws, context.partition_key, base_id, trainer.train_config(), trainer.replay_size, on_progress, context.log.debug, trainer.launch(),
        trainer.general_replay_size, owner=f"dagster run {context.run.run_id}", lease_ttl_s=trainer.lease_ttl_s,
    )
    if figures["backfill"]:
        context.log.info(f"backfill: trained on {figures['parent_model']}, the model promoted after the version before; {figures['promoted_at_training']} is promoted now")
    return dg.MaterializeResult(
        metadata={
            "parent_model": figures["parent_model"],
            "parent_sha256": figures["parent_sha256"],
            "examples": figures["examples"],
            "new_reflections": figures["new_reflections"],
            "replay_reflections": figures["replay_reflections"],
            "retired_reflections": figures["retired_reflections"],
            "backfill": figures["backfill"],
            "promoted_at_training": figures["promoted_at_training"] or "",
            "steps": figures["steps"],
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


@dg.asset(partitions_def=corpus_versions, deps=[memory_adapter], kinds={"pytorch"}, group_name="memo",
          description="The adapter merged into the promoted memory model with mergekit: a registered candidate.")
def memory_model(context: dg.AssetExecutionContext, registry: ModelRegistryResource, trainer: TrainerResource) -> dg.MaterializeResult:
    ws = registry.workspace()
    record = merge_memory_model(ws, context.partition_key, trainer.merge_config())
    return dg.MaterializeResult(
        metadata={
            "model_id": record["model_id"],
            "parent_model": record["parent"],
            "sha256": record["sha256"],
            "merge_method": record["merge"]["config"]["method"],
            "merge_config": record["merge"]["config"],
            "uri": dg.MetadataValue.path(record["uri"]),
        }
    )
