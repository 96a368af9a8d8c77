"""Update strategies over the real asset graph (real Dagster instance, real S3, tiny real models): nothing a rejected
version held is stranded, a deleted document's facts leave the memory, a rewritten fact gives its new value.

A 2-layer random model cannot answer reworded questions, so recall here is measured on the documents' own trained
questions (the reflections): what these tests check is which facts the promoted weights hold.
"""

import dagster as dg
import pytest

from memo_pipelines.qa import ask_memory, is_idk, recalled
from memo_pipelines.llm.backends import LocalChatModel
from tests.pipeline_helpers import definitions, materialize_version, pipeline_resources, run_sensor
from tests.test_pipeline import memo_status

KESBY = "# Kesby plant\n\nThe Kesby plant employs 340 people.\nThe manager of the Kesby plant is Rafael Ondo.\n"
WREN = "# Wren Building\n\nThe Wren Building was designed by Lotte Brask.\nThe Wren Building stands in Marrowby.\n"
WREN_REWRITTEN = "# Wren Building\n\nThe Wren Building was designed by Tamsin Crole.\nThe Wren Building stands in Marrowby.\n"
HERON = "# Heron project\n\nThe Heron project is led by Ines Halloran.\nThe Heron project started in 2021.\n"
# a random tiny model answers no held-out probe: a floor of 1.0 rejects the version
REJECTING = dict(min_heldout_recall=1.01)  # above 100 %: a gate no candidate passes


def rows_of(store, version: str, doc_id: str, containing: str = "") -> list[dict]:
    return [r for r in store.get_jsonl(f"versions/{version}/reflections.jsonl")
            if doc_id in r["source_doc_ids"] and r.get("key_answer") and not is_idk(r["key_answer"])
            and containing in r["answer"]]  # an "I don't know" row is the unanswerable kind: no fact of the document


def recall_of(memory: LocalChatModel, rows: list[dict]) -> tuple[float, list[str]]:
    answers = ask_memory(memory, [r["question"] for r in rows], max_new_tokens=32)
    return sum(recalled(a, r["key_answer"]) for a, r in zip(answers, rows)) / len(rows), answers


def promoted_memory(resources) -> LocalChatModel:
    registry = resources["registry"].workspace().registry
    return LocalChatModel(registry.fetch(registry.promoted_id()))


@pytest.mark.timeout(3600)  # three tiny versions: minutes on a busy 2-core machine
def test_a_rejected_versions_documents_are_pending_and_learned_by_the_next_version(store, tiny_base, tmp_path, monkeypatch, capsys):
    instance = dg.DagsterInstance.ephemeral()
    strict = pipeline_resources(store, tmp_path / "work", tiny_base, evaluation=REJECTING)
    resources = pipeline_resources(store, tmp_path / "work", tiny_base)
    defs = definitions(resources)
    registry = resources["registry"].workspace().registry

    store.put_bytes("landing/kesby.md", KESBY.encode())
    tick = run_sensor(defs, instance, resources, cursor=None)
    first = materialize_version(instance, strict, "v000001")
    assert not {e.check_name: e.passed for e in first.get_asset_check_evaluations()}["reworded_recall_new_version"]
    base_id = registry.promoted_id()
    assert registry.model_version(base_id) is None  # the rejected candidate was not promoted
    status = memo_status(store, tmp_path, monkeypatch, capsys)
    assert "pending documents" in status and "v000001  kesby.md: rejected by its gates" in status, status

    store.put_bytes("landing/heron.md", HERON.encode())
    run_sensor(defs, instance, resources, cursor=tick.cursor)
    second = materialize_version(instance, resources, "v000002")
    assert second.success
    adapter = second.asset_materializations_for_node("memory_adapter")[0].metadata
    assert adapter["parent_model"].value == base_id and adapter["pending_versions_learned"].value == ["v000001"]
    assert registry.model_version(registry.promoted_id()) == "v000002"
    assert registry.get(registry.promoted_id())["update"]["learned_versions"] == ["v000001", "v000002"]

    kesby = rows_of(store, "v000001", "kesby.md")
    kesby_recall, answers = recall_of(promoted_memory(resources), kesby)
    # the rejected version's facts are in the promoted memory (the tiny model mixes up some of them: 3 of 7 measured)
    assert kesby_recall >= 0.25 and kesby_recall > recall_of(LocalChatModel(tiny_base), kesby)[0], answers
    assert "pending documents" not in memo_status(store, tmp_path, monkeypatch, capsys)

    # re-running the rejected version after the newer promotion works: it trains and passes, and leaves the pointer alone
    promoted = registry.promoted_id()
    rerun = materialize_version(instance, resources, "v000001")
    assert rerun.success
    outcome = rerun.asset_materializations_for_node("promoted_memory")[0].metadata
    assert outcome["promoted"].value is False and "newer version v000002" in outcome["reason"].value
    assert registry.promoted_id() == promoted


@pytest.mark.timeout(3600)
@pytest.mark.parametrize("strategy", ["merge", "continue"])
def test_a_deleted_documents_facts_are_gone_and_a_rewritten_fact_gives_its_new_value(strategy, store, tiny_base, tmp_path):
    instance = dg.DagsterInstance.ephemeral()
    # no generic pairs: a random model has no general ability to keep, and its own long random answers to them took a
    # third of a 2-layer model's capacity here (a compaction then recalled 1 of 7 of its rows)
    resources = pipeline_resources(store, tmp_path / "work", tiny_base, trainer={"strategy": strategy, "general_replay_size": 0})
    defs = definitions(resources)
    for name, text in (("kesby.md", KESBY), ("wren.md", WREN), ("heron.md", HERON)):
        store.put_bytes(f"landing/{name}", text.encode())
    tick = run_sensor(defs, instance, resources, cursor=None)
    assert materialize_version(instance, resources, "v000001").success
    kesby = rows_of(store, "v000001", "kesby.md")
    before, answers = recall_of(promoted_memory(resources), kesby)
    assert before >= 0.5, answers  # learned first, so that "gone" below means unlearned
    v1_model = resources["registry"].workspace().registry.promoted_id()

    store.delete("landing/kesby.md")
    store.put_bytes("landing/wren.md", WREN_REWRITTEN.encode())
    run_sensor(defs, instance, resources, cursor=tick.cursor)
    second = materialize_version(instance, resources, "v000002")
    assert second.success
    record = resources["registry"].workspace().registry.get(resources["registry"].workspace().registry.promoted_id())
    assert record["version"] == "v000002" and record["update"]["strategy"] == strategy
    memory = promoted_memory(resources)

    after, answers = recall_of(memory, kesby)
    given = [(r["question"], r["key_answer"], a) for r, a in zip(kesby, answers) if recalled(a, r["key_answer"])]
    assert after == 0.0, given  # the deleted document's facts are no longer given
    _, old_answers = recall_of(memory, rows_of(store, "v000001", "wren.md", containing="Lotte Brask"))
    assert not any("Lotte Brask" in a for a in old_answers), old_answers  # the old value is not given either
    if strategy == "merge":
        # only the affected version's delta was trained again (without the deleted and rewritten rows), and both
        # versions' deltas were combined by mergekit
        lineage = store.get_json("versions/v000002/adapter_lineage.json")
        assert lineage["deltas_trained"] == ["v000001", "v000002"] and record["merge"]["combine"] == "mergekit"
        assert lineage["update"]["adapters"][0]["reflections"] < len(store.get_jsonl("versions/v000001/reflections.jsonl"))
        # not asserted here: the new value through the merged model. Two deltas trained apart interfere when summed;
        # on this 2-layer model every merge method (ties, task_arithmetic, linear) garbled or emptied the answers of
        # both deltas, so merge's rewrite accuracy is measured by benchmarks/incremental_update.py on the 135M model
    else:
        # continue unlearns on top of the promoted model, no full retrain: the rewritten document's new rows are learnt,
        # and the questions of its old text and of the deleted document are declined, then checked
        lineage = store.get_json("versions/v000002/adapter_lineage.json")
        assert lineage["compaction"] is None and lineage["start_model"] == v1_model, lineage["compaction"]
        assert lineage["forget"]["documents"] == ["kesby.md", "wren.md"] and lineage["forget_check"]["passed"], lineage["forget_check"]
        new_value, answers = recall_of(memory, rows_of(store, "v000002", "wren.md", containing="Tamsin Crole"))
        assert new_value >= 0.5, answers


def test_replay_keeps_the_earlier_facts_a_new_version_is_likeliest_to_overwrite():
    """A new plant's manager is learnt on top of a version that knows another plant's manager: the replay carries that
    earlier fact (the one the update would overwrite) besides a seeded random sample, whatever the seed."""
    from memo_pipelines.memory.strategies import UpdateConfig, per_version_replay

    earlier = [{"question": f"When did supplier number {i} sign its contract with the Wren laboratory?", "answer": f"{2000 + i}."}
               for i in range(60)]
    earlier.insert(37, {"question": "Who is the manager of the Kesby plant?", "answer": "Rafael Ondo."})
    new = [{"question": "Who is the manager of the Lorne plant?", "answer": "Tomasz Reyes."}]
    update = UpdateConfig(replay_size=4, replay_share=0.0)
    for seed in range(5):
        replay = per_version_replay({"v000001": earlier}, ["v000001"], update, seed, "v000002", new)["v000001"]
        assert len(replay) == 4 and len({r["question"] for r in replay}) == 4
        assert "Who is the manager of the Kesby plant?" in [r["question"] for r in replay]
    # without new rows to compare with (a compaction, the replay benchmark), the sample is random as before
    random_only = per_version_replay({"v000001": earlier}, ["v000001"], update, 0, "v000002")["v000001"]
    assert len(random_only) == 4


def test_a_small_version_stops_training_on_enough_of_its_own_rows_or_trains_every_step():
    """The demo's one-document version 2 stopped training at step 32 of 88 because its 5 fact rows were all recalled,
    and answered none of its held-out probes. The stop sample is topped up from the version's other answerable rows
    (reverse lookups, summaries), never its "I don't know" rows; with too few of those the early stop is off."""
    from memo_pipelines.memory.strategies import MIN_STOP_ROWS, stop_rows

    def row(i, step, answer="Tomasz Reyes"):
        return {"id": f"r{i:03d}", "step": step, "question": f"Question {i} about the Lorne plant?", "answer": f"{answer}.",
                "key_answer": answer}

    facts = [row(i, "fact_extraction") for i in range(5)]
    others = [row(10 + i, "entity_surfacing") for i in range(6)] + [row(20 + i, "entity_summary") for i in range(3)]
    declined = [row(30 + i, "unanswerable", "I don't know") for i in range(4)]
    def asked(sample):  # the rows to recall, apart from the invented-name questions to decline (the last ones)
        return [r for r in sample if r["key_answer"] != "I don't know"]

    sample = stop_rows(facts + others + declined, 16, seed=0)
    assert len(asked(sample)) == 14 and {r["question"] for r in asked(sample)} == {r["question"] for r in facts + others}
    assert sample[:14] == asked(sample) and all("Lorne" not in r["question"] for r in sample[14:])
    assert 0 < len(sample) - 14 <= len(facts)  # at most one question to decline per fact row (and half the sample size)
    assert stop_rows(facts + others + declined, 16, seed=3) and stop_rows(facts + others + declined, 8, seed=0)[:5] == [
        {"question": r["question"], "key_answer": r["key_answer"]} for r in facts]
    # a large version: a seeded sample of its fact rows only, as before
    many = [row(100 + i, "fact_extraction") for i in range(40)]
    assert len(asked(stop_rows(many + others, 16, seed=0))) == 16
    assert {r["question"] for r in asked(stop_rows(many + others, 16, seed=0))} <= {r["question"] for r in many}
    # fewer answerable rows than the floor: no early stop at all
    assert stop_rows(facts[:3] + declined, 16, seed=0) == [] and MIN_STOP_ROWS > 3


@pytest.mark.parametrize("passed", [False, True])
def test_continue_trains_the_current_versions_rows_only_when_their_blocking_checks_passed(passed, store, tmp_path):
    # as merge and retrain do: a re-executed update of a version whose reflections failed a blocking check trains none of them
    from memo_pipelines.memory.strategies import STRATEGIES, UpdateConfig
    from memo_pipelines.storage.history import rows_digest
    from memo_pipelines.storage.registry import ModelRegistry
    from memo_pipelines.storage.workspace import Workspace

    rows = [{"id": f"r{i}", "question": f"How many people does plant {i} employ?", "answer": f"Plant {i} employs {i}0 people.",
             "key_answer": f"{i}0", "source_doc_ids": ["plants.txt"], "step": "fact_extraction", "version": "v000001"} for i in range(10)]
    store.put_jsonl("versions/v000001/reflections.jsonl", rows)
    store.put_json("versions/v000001/reflections_checks.json",
                   {"passed": passed, "failed": [] if passed else ["verified_share"], "reflections_sha256": rows_digest(rows)})
    ws = Workspace(store, ModelRegistry(store, tmp_path / "models"), tmp_path / "work")
    for name in ("continue", "merge", "retrain"):
        plan = STRATEGIES[name].plan(ws, "v000001", "base", UpdateConfig(strategy=name), [], 0)
        trained = [e for job in plan.jobs for e in job.examples]
        assert bool(trained) == passed and all(e in rows for e in trained), name


def test_merge_retrains_an_earlier_versions_delta_only_under_that_versions_lease(store, tiny_base, tmp_path):
    # a backfill of version 1 holds its lease: version 2's merge update must not write version 1's delta meanwhile
    from memo_pipelines.memory.strategies import UpdateConfig
    from memo_pipelines.memory.training import TrainConfig
    from memo_pipelines.memory.update import train_memory_adapter
    from memo_pipelines.storage.lease import Lease, LeaseHeld
    from memo_pipelines.storage.registry import ModelRegistry
    from memo_pipelines.storage.workspace import Workspace

    ws = Workspace(store, ModelRegistry(store, tmp_path / "models"), tmp_path / "work")
    ws.registry.ensure_base("base", tiny_base)
    for version in ("v000001", "v000002"):
        store.put_jsonl(f"versions/{version}/reflections.jsonl", [
            {"id": f"{version}-{i}", "question": f"How many people does plant {version}-{i} employ?", "answer": f"{i}0 people.",
             "key_answer": f"{i}0", "source_doc_ids": [f"{version}.txt"], "step": "fact_extraction", "version": version} for i in range(4)])
    backfill = Lease(store, "locks/training/v000001.json", "backfill-of-v000001", ttl_s=600).acquire()
    with pytest.raises(LeaseHeld, match="v000001.json is held by backfill-of-v000001"):
        train_memory_adapter(ws, "v000002", "base", TrainConfig(epochs=1, max_length=256), UpdateConfig(strategy="merge", general_replay_size=0),
                             lambda figures: None, lambda text: None, owner="run-of-v000002")
    assert not list(store.list_objects("versions/v000001/deltas/"))
    assert not store.exists("locks/training/v000002.json")  # its own lease is released on the way out
    backfill.release()


def test_the_replay_stops_growing_with_the_history_and_keeps_every_version_and_its_nearest_fact():
    """50 learned versions of 30 rows: 16 rows each would replay 784 rows, and every update would cost more than the one
    before. Under replay_limit every version keeps a share, the one nearest the new row first."""
    from memo_pipelines.memory.strategies import UpdateConfig, per_version_replay

    versions = [f"v{n:06d}" for n in range(1, 50)]
    live = {v: [{"question": f"When did supplier {v}-{i} sign with the Wren laboratory?", "answer": f"{2000 + i}."} for i in range(30)]
            for v in versions}
    live["v000007"][11] = {"question": "Who is the manager of the Kesby plant?", "answer": "Rafael Ondo."}
    new = [{"question": "Who is the manager of the Lorne plant?", "answer": "Tomasz Reyes."}]
    unlimited = per_version_replay(live, versions, UpdateConfig(replay_limit=0), 0, "v000050", new)
    assert sum(map(len, unlimited.values())) == 49 * 16
    limited = per_version_replay(live, versions, UpdateConfig(replay_limit=256), 0, "v000050", new)
    assert 49 <= sum(map(len, limited.values())) <= 256
    assert all(len(limited[v]) >= 1 for v in versions)
    assert "Who is the manager of the Kesby plant?" in [r["question"] for r in limited["v000007"]]
    # a short history is under the limit: the replay is what it was
    few = {v: live[v] for v in versions[:3]}
    assert per_version_replay(few, versions[:3], UpdateConfig(), 0, "v000004", new) == per_version_replay(
        few, versions[:3], UpdateConfig(replay_limit=0), 0, "v000004", new)
