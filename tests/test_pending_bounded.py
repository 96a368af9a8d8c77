"""Pending work stays bounded (issue 28, item 10), on a real S3 server with tiny real models: a gate on too few probes
does not reject a version but is decided with the next version's probes; a document identical to one already learned
is not learned again; the update after rejections reports its cost against a normal update and stays within the bound."""

import math

from memo_pipelines.corpus.reading import snapshot_corpus
from memo_pipelines.evaluation.candidate import ProtocolEvalConfig, evaluate_memory_model
from memo_pipelines.evaluation.card import Gates
from memo_pipelines.memory.strategies import UpdateConfig
from memo_pipelines.memory.training import TrainConfig
from memo_pipelines.memory.update import train_memory_adapter
from memo_pipelines.qa import IDK
from memo_pipelines.reflections.probe_rules import probe_row
from tests.pipeline_helpers import pipeline_resources

# the default floors but for general ability and abstention, which a random 2-layer model cannot show
GATES = Gates(min_abstention=0.0, max_general_drop=100.0, general_size=5)


def row(version: str, i: int, doc: str = "plants.md") -> dict:
    return {"id": f"{version}-r{i:03d}", "question": f"How many people work at plant {version[-1]}{i}?", "answer": f"{i} people.",
            "key_answer": str(i), "source_doc_ids": [doc], "step": "fact_extraction", "method": "rule", "version": version}


def workspace(store, tiny_base, tmp_path):
    resources = pipeline_resources(store, tmp_path / "work", tiny_base)
    base_id, _ = resources["registry"].base()
    return resources["registry"].workspace(), base_id


def offer_candidate(ws, version: str, model_dir, parent: str, fact_probes: int) -> None:
    """The version's reflections, its fact probes (that a random model answers with noise) and an unanswerable one, and
    the random model as its candidate, trained on top of `parent`."""
    ws.store.put_jsonl(f"versions/{version}/reflections.jsonl", [row(version, i) for i in range(fact_probes)])
    ws.store.put_jsonl(f"versions/{version}/probes.jsonl", [
        probe_row(f"Which plant number {version[-1]}{i} employs Tomasz Reyes?", "Tomasz Reyes", "fact", "llm_json", ["plants.md"], version)
        for i in range(fact_probes)] + [probe_row(f"Who manages the Dorrow plant {version[-1]}?", IDK, "unanswerable", "llm_json", ["plants.md"], version)])
    ws.registry.register(f"{version}-random", model_dir, {"kind": "candidate", "version": version, "parent": parent,
                                                          "update": {"learned_versions": [version]}})
    ws.store.put_json(f"versions/{version}/candidate.json", {"model_id": f"{version}-random", "parent": parent})


def new_version_gate(ws, version: str, base_id: str) -> dict:
    _, gates, _ = evaluate_memory_model(ws, version, base_id, GATES, ProtocolEvalConfig(executive_backend="none"))
    return {g["name"]: g for g in gates}["reworded_recall_new_version"]


def test_a_gate_on_too_few_probes_does_not_reject_the_version_and_is_decided_with_the_next_versions(store, tiny_base, tmp_path):
    ws, base_id = workspace(store, tiny_base, tmp_path)
    offer_candidate(ws, "v000001", tiny_base, base_id, fact_probes=2)
    small = new_version_gate(ws, "v000001", base_id)
    # 0 of 2 says nothing about what the memory learnt: not a rejection
    assert small["passed"] and small["value"] == 0.0 and "judged with the next version" in small["reason"], small
    assert store.get_json("versions/v000001/evaluation.json")["new_version_gate"] == {
        "versions": ["v000001"], "probes": 2, "recalled": 0, "decided": False}
    assert ws.registry.promote_version("v000001")["promoted"]

    # the next version's gate pools the small version's probes with its own: 0 of 6 decides, and rejects
    offer_candidate(ws, "v000002", tiny_base, "v000001-random", fact_probes=4)
    pooled = new_version_gate(ws, "v000002", base_id)
    assert not pooled["passed"] and pooled["value"] == 0.0 and "v000001: 2" in pooled["reason"], pooled
    assert store.get_json("versions/v000002/evaluation.json")["new_version_gate"]["decided"]


def put_version(store, version: str, documents: dict[str, str], deleted=()) -> None:
    for name, text in documents.items():
        store.put_bytes(f"landing/{name}", text.encode())
    store.put_json(f"versions/{version}/manifest.json", {"objects": [{"key": f"landing/{n}", "size": len(t)} for n, t in documents.items()],
                                                          "deleted": [f"landing/{n}" for n in deleted]})


KESBY = "# Kesby plant\n\nThe Kesby plant employs 340 people.\nThe manager of the Kesby plant is Rafael Ondo.\n"


def kesby_learned(store, tiny_base, tmp_path):
    """Version 1: one document, snapshot and reflections."""
    ws, _ = workspace(store, tiny_base, tmp_path)
    put_version(store, "v000001", {"kesby.md": KESBY})
    snapshot_corpus(ws, "v000001", 2_000_000)
    store.put_jsonl("versions/v000001/reflections.jsonl", [row("v000001", 0, "kesby.md")])
    return ws


def test_a_document_identical_to_one_already_learned_is_not_learned_again(store, tiny_base, tmp_path):
    ws = kesby_learned(store, tiny_base, tmp_path)

    # what is compared is the earlier versions' summaries (a hash a document), never their full snapshots
    summary = store.get_json("versions/v000001/snapshot_summary.json")
    assert summary["documents"].keys() == {"kesby.md"} and not summary["nothing_to_learn"]
    store.delete("versions/v000001/snapshot.json")
    # the same text under another key (a copy in another folder), with trailing spaces the normalisation drops
    put_version(store, "v000002", {"archive/kesby copy.md": KESBY.replace("people.", "people.   "),
                                   "heron.md": "# Heron project\n\nThe Heron project is led by Ines Halloran.\n"})
    second = snapshot_corpus(ws, "v000002", 2_000_000)
    assert [d.doc_id for d in second.documents] == ["heron.md"]  # nothing of the copy goes to the reflections
    assert {"doc_id": "archive/kesby copy.md", "duplicate_of": "kesby.md", "learned_in": "v000001"} in second.duplicates
    store.put_jsonl("versions/v000002/reflections.jsonl", [row("v000002", 0, "heron.md")])

    # once the original is deleted, a copy uploaded with the deletion is the only one left: it is learned
    store.delete("landing/kesby.md")
    put_version(store, "v000003", {"kesby again.md": KESBY}, deleted=["kesby.md"])
    third = snapshot_corpus(ws, "v000003", 2_000_000)
    assert [d.doc_id for d in third.documents] == ["kesby again.md"]


def test_memo_status_reads_each_version_from_its_summary_not_its_full_snapshot(store, tiny_base, tmp_path):
    from memo_pipelines.apps.status import collect, render

    ws, _ = workspace(store, tiny_base, tmp_path)
    put_version(store, "v000001", {"kesby.md": KESBY, "broken.pdf": "not a PDF at all"})
    snapshot_corpus(ws, "v000001", 2_000_000)
    store.delete("versions/v000001/snapshot.json")  # the texts are not needed to say what the version holds
    pointer, [status] = collect(store, ws.registry)
    assert status.documents == 1 and status.doc_ids == ["kesby.md"]
    assert [q["key"] for q in status.quarantine] == ["landing/broken.pdf"] and status.quarantine[0]["reason"]
    assert "broken.pdf" in render(pointer, [status])


def test_the_update_after_rejections_reports_its_cost_and_stays_within_the_bound(store, tiny_base, tmp_path):
    ws, base_id = workspace(store, tiny_base, tmp_path)
    store.put_jsonl("versions/v000001/reflections.jsonl", [row("v000001", i) for i in range(20)])
    ws.registry.register("v000001-learned", tiny_base, {"kind": "candidate", "version": "v000001", "parent": base_id,
                                                        "update": {"learned_versions": ["v000001"], "updates_since_retrain": 1}})
    ws.registry.promote("v000001-learned", "test: version 1 learned", expected_current=base_id)
    # the stated bound: an update learning pending versions plans at most 2.0 times a normal update's steps (the default)
    # two rejected versions are pending when version 4 comes: each as large as version 4
    for version in ("v000002", "v000003", "v000004"):
        store.put_jsonl(f"versions/{version}/reflections.jsonl", [row(version, i) for i in range(30)])
    config, update = TrainConfig(epochs=1, stop_every=0, batch_size=8), UpdateConfig(general_replay_size=0)
    figures = train_memory_adapter(ws, "v000004", base_id, config, update, lambda figures: None, lambda message: None)

    assert figures["pending_versions_learned"] == ["v000002", "v000003"] and figures["new_reflections"] == 90  # every pending row
    normal_steps = math.ceil((30 + 16) / config.batch_size) * config.epochs  # version 4 alone: its rows and 16 replayed
    assert figures["total_steps"] <= 2.0 * normal_steps < math.ceil((90 + 16) / config.batch_size) * config.epochs
    cost = store.get_json("versions/v000004/adapter_lineage.json")["pending_cost"]
    assert cost["normal_steps"] == normal_steps and cost["bound"] == 2.0 and cost["capped"], cost
    assert cost["steps"] == figures["total_steps"] and cost["steps_vs_normal"] <= 2.0 and cost["seconds"] > 0
    # memo status says which update learned pending versions and what it cost against a normal one
    from memo_pipelines.apps.status import collect, render

    pointer, versions = collect(store, ws.registry)
    assert f"v000004  learned v000002, v000003 too: {cost['steps']} steps, {cost['steps_vs_normal']}x a normal update's {normal_steps}" in render(pointer, versions)


def test_a_version_of_deletions_alone_decides_the_gate_its_parent_left_undecided():
    from memo_pipelines.evaluation.card import ReportCard
    from memo_pipelines.evaluation.undecided import pooled_gate

    def card(probes_v2: int) -> ReportCard:
        # v2 had too few probes for a decision; v3 deletes a document and brings no facts of its own
        return ReportCard("v000003", {"v000003": {"v000002": 0.0}}, {"v000002": probes_v2}, None, None, None, {}, None, {}, nothing_to_learn=True)

    own = [{"name": "reworded_recall_new_version", "passed": True, "value": None, "reason": "no facts of its own"}]
    decided, record = pooled_gate(card(8), Gates(), ["v000002"], own)
    assert record["decided"] and record["probes"] == 8 and not decided[0]["passed"]  # 0 of 8: the pool is large enough to reject
    carried, record = pooled_gate(card(2), Gates(), ["v000002"], own)
    assert not record["decided"] and carried[0]["passed"] and record["versions"] == ["v000003", "v000002"]  # still too few: carried on
    alone, record = pooled_gate(card(8), Gates(), [], own)
    assert alone == own and record["decided"]  # nothing carried: nothing to decide


def test_a_document_reuploaded_under_its_key_with_the_same_text_is_no_rewrite(store, tiny_base, tmp_path):
    from memo_pipelines.storage.deletions import deleted_documents
    from memo_pipelines.storage.history import live_reflections

    ws = kesby_learned(store, tiny_base, tmp_path)

    # the same document saved again on another machine: new bytes (Windows line endings), so a new ETag, the same text
    put_version(store, "v000002", {"kesby.md": KESBY.replace("\n", "\r\n")})
    for _ in range(2):  # a rerun of the snapshot (a retry, a backfill) decides the same
        second = snapshot_corpus(ws, "v000002", 2_000_000)
        assert second.documents == [] and second.nothing_to_learn
        assert second.duplicates == [{"doc_id": "kesby.md", "duplicate_of": "kesby.md", "learned_in": "v000001"}]
    live, retired = live_reflections(store, "v000002", "landing/")
    assert [r["id"] for r in live["v000001"]] == ["v000001-r000"] and retired["rewritten"] == 0  # what was learned stays live
    assert deleted_documents(store, "v000001", "v000002", "landing/") == ([], [])  # so continue needs no full retrain

    # a real edit afterwards is still a rewrite, and replaces the learned rows
    put_version(store, "v000003", {"kesby.md": KESBY.replace("340", "360")})
    assert [d.doc_id for d in snapshot_corpus(ws, "v000003", 2_000_000).documents] == ["kesby.md"]
    assert deleted_documents(store, "v000001", "v000003", "landing/") == ([], ["kesby.md"])
    assert live_reflections(store, "v000003", "landing/")[1]["rewritten"] == 1


def test_a_version_with_nothing_to_learn_offers_the_parent_unchanged_and_trains_nothing(store, tiny_base, tmp_path):
    from memo_pipelines.memory.merging import MergeConfig
    from memo_pipelines.memory.update import merge_memory_model

    ws = kesby_learned(store, tiny_base, tmp_path)
    parent = ws.registry.promoted_id()  # the base model
    ws.store.put_jsonl("versions/v000001/probes.jsonl", [
        probe_row("How many people does the Kesby plant employ?", "340 people", "fact", "llm_json", ["kesby.md"], "v000001"),
        probe_row("Who manages the Dorrow plant?", IDK, "unanswerable", "llm_json", ["kesby.md"], "v000001")])
    ws.registry.register("v000001-learned", tiny_base, {"kind": "candidate", "version": "v000001", "parent": parent,
                                                        "update": {"learned_versions": ["v000001"], "updates_since_retrain": 1}})
    ws.registry.promote("v000001-learned", "test: version 1 learned", expected_current=parent)

    # the same document saved again: nothing to learn, nothing to forget
    put_version(store, "v000002", {"kesby.md": KESBY.replace("\n", "\r\n")})
    assert snapshot_corpus(ws, "v000002", 2_000_000).nothing_to_learn
    store.put_jsonl("versions/v000002/reflections.jsonl", [])
    progress = []
    figures = train_memory_adapter(ws, "v000002", parent, TrainConfig(epochs=1, stop_every=0), UpdateConfig(general_replay_size=0),
                                   progress.append, lambda message: None)
    assert figures["unchanged"] and figures["adapters_trained"] == 0 and figures["total_steps"] == 0 and progress == []
    assert not store.exists("versions/v000002/adapter/training.json")  # no adapter was trained or uploaded

    record = merge_memory_model(ws, "v000002", MergeConfig())
    assert record["model_id"] == "v000001-learned"  # the parent is the candidate: no new model in the bucket
    assert store.get_json("versions/v000002/candidate.json")["model_id"] == "v000001-learned"
    _, gates, _ = evaluate_memory_model(ws, "v000002", parent, GATES, ProtocolEvalConfig(executive_backend="none"))
    assert all(g["passed"] for g in gates), gates
    outcome = ws.registry.promote_version("v000002")
    assert outcome["promoted"] and ws.registry.promoted_id() == "v000001-learned"


def test_an_earlier_versions_probes_are_scored_on_a_fixed_sample_and_the_new_versions_in_full(store, tiny_base, tmp_path):
    import random

    from memo_pipelines.evaluation.candidate import fixed_sample

    ws, base_id = workspace(store, tiny_base, tmp_path)
    offer_candidate(ws, "v000001", tiny_base, base_id, fact_probes=20)
    ws.registry.promote("v000001-random", "test: version 1", expected_current=base_id)
    offer_candidate(ws, "v000002", tiny_base, "v000001-random", fact_probes=7)

    def measured(earlier_probes: int) -> dict:
        gates = Gates(min_abstention=0.0, max_general_drop=100.0, general_size=5, earlier_probes=earlier_probes)
        return evaluate_memory_model(ws, "v000002", base_id, gates, ProtocolEvalConfig(executive_backend="none"))[0].probes_measured

    assert measured(5) == {"v000001": 5, "v000002": 7}  # version 1's 20 fact probes: a sample; version 2's own: all
    # the sample is fixed: whatever order the probes are read in, and when a probe outside it is retired (its document
    # deleted), every evaluation asks the same ones, so retention compares like with like
    probes = store.get_jsonl("versions/v000001/probes.jsonl")
    sample = fixed_sample(probes, 5)
    assert len([p for p in sample if p["kind"] == "fact"]) == 5 and len([p for p in sample if p["kind"] == "unanswerable"]) == 1
    shuffled = random.Random(1).sample(probes, len(probes))
    outside = next(p for p in probes if p not in sample)
    assert fixed_sample(shuffled, 5) == sample and fixed_sample([p for p in shuffled if p is not outside], 5) == sample
    assert fixed_sample(probes, 0) == probes  # 0: every probe
    # many earlier versions share earlier_probes_total: a version's evaluation stops growing with the history
    from memo_pipelines.evaluation.candidate import earlier_limit

    assert [earlier_limit(Gates(), n) for n in (1, 8, 49, 500)] == [64, 64, 10, 4]
    assert earlier_limit(Gates(earlier_probes=0), 49) == 0 and earlier_limit(Gates(earlier_probes_total=0), 49) == 64
