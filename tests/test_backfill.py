"""Backfills over the real asset graph: an old version re-materialised trains on the model promoted after the version
before it, and never moves the promoted pointer off a newer version's model unless explicitly allowed. Deleted
documents' reflections leave the replay set."""

import json

import dagster as dg

from memo_pipelines.orchestration.definitions import ASSETS
from tests.pipeline_helpers import definitions, materialize_version, pipeline_resources, run_sensor
from tests.test_pipeline import upload

BACKFILL_TAGS = {"dagster/backfill": "training-change"}
# what is tested is lineage and the pointer, not recall: short training, gates that pass
FAST = {"epochs": 4}
OPEN_GATES = {"min_heldout_recall": 0.0, "max_forgetting": 1.0}


def metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict:
    return {k: v.value for k, v in result.asset_materializations_for_node(asset)[0].metadata.items()}


def test_backfill_trains_on_the_history_and_does_not_promote_over_a_newer_version(store, tiny_base, tmp_path):
    instance = dg.DagsterInstance.ephemeral()
    resources = pipeline_resources(store, tmp_path / "work", tiny_base, trainer=FAST, evaluation=OPEN_GATES)
    defs = definitions(resources)
    registry = resources["registry"].workspace().registry
    base_id = registry.promoted_id() or f"base-{tiny_base.name}"

    upload(store, ["product_tern.md", "plant_kesby.txt"])
    tick = run_sensor(defs, instance, resources, cursor=None)
    first = materialize_version(instance, resources, "v000001")
    assert first.success
    promoted_v1 = metadata(first, "promoted_memory")["promoted_model"]

    # version 2 deletes the Kesby document: its facts leave the replay set and the retention targets
    store.delete("landing/plant_kesby.txt")
    upload(store, ["people_ines_halloran.txt"])
    run_sensor(defs, instance, resources, cursor=tick.cursor)
    second = materialize_version(instance, resources, "v000002")
    assert second.success
    adapter_v2 = metadata(second, "memory_adapter")
    assert adapter_v2["parent_model"] == promoted_v1 and adapter_v2["backfill"] is False
    assert adapter_v2["retired_reflections"]["deleted"] > 0 and adapter_v2["replay_reflections"] > 0
    assert "plant_kesby.txt" in metadata(second, "corpus_snapshot")["deleted"]
    examples = (tmp_path / "work" / "runs" / "v000002" / "adapter" / "examples.jsonl").read_text()
    assert "340" not in examples  # the deleted document's facts are not trained again
    promoted_v2 = metadata(second, "promoted_memory")["promoted_model"]
    assert promoted_v2.startswith("v000002-") and registry.promoted_id() == promoted_v2

    # backfill version 1 after a change (here the learning rate): it trains on the base, as v1 did, and is not promoted
    changed = pipeline_resources(store, tmp_path / "work", tiny_base, trainer={**FAST, "learning_rate": 2e-3}, evaluation=OPEN_GATES)
    backfill = dg.materialize(ASSETS, partition_key="v000001", resources=changed, instance=instance, tags=BACKFILL_TAGS)
    assert backfill.success
    # rebuilt from its manifest: the Kesby document, deleted since, comes from the copy version 1 archived
    assert metadata(backfill, "corpus_snapshot")["documents"] == 2
    adapter_v1b = metadata(backfill, "memory_adapter")
    assert adapter_v1b["parent_model"] == base_id and adapter_v1b["backfill"] is True
    assert adapter_v1b["promoted_at_training"] == promoted_v2
    outcome = metadata(backfill, "promoted_memory")
    assert outcome["promoted"] is False and "not promoted: newer version v000002 is promoted" in outcome["reason"]
    assert registry.promoted_id() == promoted_v2
    candidate_v1b = outcome["candidate_model"]
    assert candidate_v1b != promoted_v1 and candidate_v1b.startswith("v000001-")

    # backfilling version 2 trains on the model promoted after version 1 (history), not on the unpromoted v1 backfill
    retrain_v2 = dg.materialize(ASSETS, selection=["memory_adapter"], partition_key="v000002", resources=changed, instance=instance, tags=BACKFILL_TAGS)
    assert metadata(retrain_v2, "memory_adapter")["parent_model"] == promoted_v1
    lineage = json.loads(store.get_bytes("versions/v000002/adapter_lineage.json"))
    assert lineage["parent_model"] == promoted_v1 and lineage["backfill"] is True

    # explicitly allowed: the backfilled v1 model is promoted, and the move is in the history
    allowed = dg.materialize(ASSETS, selection=["promoted_memory"], partition_key="v000001", resources=changed, instance=instance,
                             run_config={"ops": {"promoted_memory": {"config": {"allow_backfill_promotion": True}}}})
    assert metadata(allowed, "promoted_memory")["promoted"] is True
    assert registry.promoted_id() == candidate_v1b
    assert "backfill promoted over " + promoted_v2 in registry.pointer()["history"][-1]["reason"]
