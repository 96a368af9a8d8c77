"""Forgetting with a bound, over the real asset graph (real Dagster instance, real S3, tiny real models): a deletion by
itself makes a version, its update unlearns the document on top of the promoted model (no full retrain), the promoted
memory declines the document's questions and its sources never cite it; a forget update that fails its check becomes
a compaction; a candidate that still answers a deleted document is not promoted.

As in test_update_strategies.py, recall is measured on the documents' own trained questions: a 2-layer random model
cannot answer reworded probes, so those would be "forgotten" before anything was learned.
"""

import dagster as dg
import pytest

from memo_pipelines.evaluation.candidate import ProtocolEvalConfig, evaluate_memory_model
from memo_pipelines.protocol.sources import SourceIndex
from memo_pipelines.qa import is_idk, recalled
from tests.pipeline_helpers import definitions, materialize_version, pipeline_resources, run_sensor
from tests.test_update_strategies import HERON, KESBY, WREN, promoted_memory, recall_of, rows_of

# forget_epochs: the random tiny model needs more passes than the 135M one to learn its first "I don't know"
TRAINER = {"strategy": "continue", "general_replay_size": 0, "forget_epochs": 12}


def checks_of(result) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


@pytest.mark.timeout(3600)  # three tiny versions: minutes on a busy 2-core machine
def test_a_deletion_alone_is_unlearned_by_its_own_version_and_never_cited(store, tiny_base, tmp_path):
    instance = dg.DagsterInstance.ephemeral()
    resources = pipeline_resources(store, tmp_path / "work", tiny_base, trainer=TRAINER)
    defs = definitions(resources)
    ws = resources["registry"].workspace()
    for name, text in (("kesby.md", KESBY), ("wren.md", WREN), ("heron.md", HERON)):
        store.put_bytes(f"landing/{name}", text.encode())
    tick = run_sensor(defs, instance, resources, cursor=None)
    assert materialize_version(instance, resources, "v000001").success
    v1_model = ws.registry.promoted_id()
    kesby, live = rows_of(store, "v000001", "kesby.md"), rows_of(store, "v000001", "heron.md")
    before, answers = recall_of(promoted_memory(resources), kesby)
    live_before, _ = recall_of(promoted_memory(resources), live)
    assert before >= 0.5 and live_before >= 0.5, answers  # learned first, so that "declined" below means unlearned

    # the deletion alone makes a version: nothing else was uploaded
    store.delete("landing/kesby.md")
    deletion = run_sensor(defs, instance, resources, cursor=tick.cursor)
    assert [r.partition_key for r in deletion.run_requests] == ["v000002"]
    assert store.get_json("versions/v000002/manifest.json")["objects"] == []

    second = materialize_version(instance, resources, "v000002")
    assert second.success and all(checks_of(second).values()), checks_of(second)
    record = ws.registry.get(ws.registry.promoted_id())
    assert record["version"] == "v000002" and record["parent"] == v1_model
    lineage = store.get_json("versions/v000002/adapter_lineage.json")
    # unlearned on top of the promoted model, not a full retrain from the base
    assert lineage["compaction"] is None and lineage["start_model"] == v1_model, lineage["compaction"]
    assert lineage["forget"]["documents"] == ["kesby.md"] and lineage["forget_check"]["passed"]
    assert lineage["forget_check"]["asked"] >= len(kesby)

    # the gate would have caught a memory that still answers the deleted document: v1's model offered as v2's candidate
    promoted_records = {name: store.get_json(f"versions/v000002/{name}") for name in ("candidate.json", "evaluation.json")}
    store.put_json("versions/v000002/candidate.json", {"model_id": v1_model, "parent": v1_model})
    _, gates, _ = evaluate_memory_model(ws, "v000002", resources["registry"].base()[0], resources["evaluation"].gates(),
                                        ProtocolEvalConfig(executive_backend="none"))
    stale = {g["name"]: g for g in gates}["deleted_documents_forgotten"]
    assert not stale["passed"] and stale["value"] > 0, stale
    for name, record in promoted_records.items():
        store.put_json(f"versions/v000002/{name}", record)

    memory = promoted_memory(resources)
    after, answers = recall_of(memory, kesby)
    given = [(r["question"], r["key_answer"], a) for r, a in zip(kesby, answers) if recalled(a, r["key_answer"])]
    assert after == 0.0, given
    assert sum(map(is_idk, answers)) >= 0.8 * len(answers), answers  # declined, not answered with something else
    live_after, live_answers = recall_of(memory, live)
    assert live_after >= 0.5 * live_before, live_answers  # the other documents are still known

    # sources never cite the deleted document, and an answer stating its fact cites nothing
    index = SourceIndex.from_registry(ws.registry, ws.registry.promoted_id())
    assert index.reflections and not any("kesby.md" in r["source_doc_ids"] for r in index.reflections)
    assert index.attribute("Who is the manager of the Kesby plant?", "The manager of the Kesby plant is Rafael Ondo.") == []

    # a forget update that does not pass its check becomes a compaction: one training step cannot unlearn wren.md
    store.delete("landing/wren.md")
    run_sensor(defs, instance, resources, cursor=deletion.cursor)
    hasty = pipeline_resources(store, tmp_path / "work", tiny_base, trainer={**TRAINER, "max_steps": 1})
    third = materialize_version(instance, hasty, "v000003")
    assert third.success, checks_of(third)
    lineage = store.get_json("versions/v000003/adapter_lineage.json")
    assert not lineage["forget_check"]["passed"] and lineage["forget"]["documents"] == ["wren.md"]
    assert lineage["compaction"].startswith("the forget update still gave") and lineage["start_model"] != v1_model
    wren = rows_of(store, "v000001", "wren.md")
    assert recall_of(promoted_memory(resources), wren)[0] == 0.0



def test_a_forget_leaves_alone_what_a_standing_document_still_says(store):
    # kesby.md is deleted, people.md stands and also names the Kesby plant's manager: that fact is not taken away
    from memo_pipelines.storage.deletions import deleted_documents, forget_targets
    from memo_pipelines.storage.history import live_reflections

    def row(doc, question, key, version="v000001", **extra):
        return {"id": f"{doc}-{question}", "question": question, "answer": f"{key}.", "key_answer": key, "source_doc_ids": [doc],
                "step": "fact_extraction", "version": version, **extra}

    store.put_json("versions/v000001/manifest.json", {"version": "v000001", "deleted": [], "objects": [
        {"key": f"landing/{d}", "etag": d, "size": 1} for d in ("kesby.md", "people.md")]})
    store.put_jsonl("versions/v000001/reflections.jsonl", [
        row("kesby.md", "How many people does the Kesby plant employ?", "340"),
        row("kesby.md", "Who is the manager of the Kesby plant?", "Rafael Ondo"),
        row("kesby.md", "Which plant opened in 1998?", "the Kesby plant"),
        row("kesby.md", "Who is the director of the Corven plant?", "I don't know", step="unanswerable"),
        row("people.md", "Which plant does Rafael Ondo manage?", "Rafael Ondo"),
        row("people.md", "Which plant opened in 1998?", "the Kesby plant")])
    store.put_jsonl("versions/v000001/probes.jsonl", [
        row("kesby.md", "What is the headcount of the Kesby plant?", "340", kind="fact"),
        row("kesby.md", "Who runs the Wexley plant?", "I don't know", kind="unanswerable")])
    store.put_json("versions/v000002/manifest.json", {"version": "v000002", "objects": [], "deleted": ["landing/kesby.md"]})

    assert deleted_documents(store, "v000001", "v000002", "landing/") == (["kesby.md"], [])
    live, retired = live_reflections(store, "v000002", "landing/")
    assert retired["deleted"] == 4
    targets = forget_targets(store, ["kesby.md"], "v000002", live, "landing/")
    assert {t["question"]: (t["answer"], t["key_answer"]) for t in targets} == {
        "How many people does the Kesby plant employ?": ("I don't know", "340"),
        "What is the headcount of the Kesby plant?": ("I don't know", "340")}
    # nothing to forget before the parent learned anything
    assert deleted_documents(store, None, "v000002", "landing/") == ([], [])


def test_a_rewrite_forgets_what_the_old_text_said_and_the_new_one_no_longer_does(store):
    from memo_pipelines.storage.deletions import deleted_documents, forget_targets, forgotten_questions
    from memo_pipelines.storage.history import live_reflections

    def row(question, key, version, **extra):
        return {"id": f"{version}-{question}", "question": question, "answer": f"{key}.", "key_answer": key, "source_doc_ids": ["wren.md"],
                "step": "fact_extraction", "version": version, **extra}

    def land(version, text):
        store.put_json(f"versions/{version}/manifest.json", {"version": version, "deleted": [], "objects": [
            {"key": "landing/wren.md", "etag": version, "size": len(text)}]})
        store.put_json(f"versions/{version}/snapshot.json", {"version": version, "quarantine": [], "duplicates": [], "documents": [
            {"doc_id": "wren.md", "key": "landing/wren.md", "etag": version, "text": text, "sha256": version}]})

    land("v000001", "The Wren Building was designed by Lotte Brask. It stands in Marrowby. It opened in 1931.")
    store.put_jsonl("versions/v000001/reflections.jsonl", [
        row("Who designed the Wren Building?", "Lotte Brask", "v000001"),
        row("Where does the Wren Building stand?", "Marrowby", "v000001"),
        row("When did the Wren Building open?", "1931", "v000001")])
    store.put_jsonl("versions/v000001/probes.jsonl", [row("Who was it that designed the Wren Building?", "Lotte Brask", "v000001", kind="fact")])
    # the rewrite names a new architect, keeps the town in other words, and says nothing of the opening any more
    land("v000002", "Tamsin Crole designed the Wren Building, which stands in Marrowby.")
    store.put_jsonl("versions/v000002/reflections.jsonl", [row("Who designed the Wren Building?", "Tamsin Crole", "v000002")])
    store.put_jsonl("versions/v000002/probes.jsonl", [row("Who was the designer of the Wren Building?", "Tamsin Crole", "v000002", kind="fact")])

    assert deleted_documents(store, "v000001", "v000002", "landing/") == ([], ["wren.md"])
    live, _ = live_reflections(store, "v000002", "landing/")
    targets = forget_targets(store, ["wren.md"], "v000002", live, "landing/")
    # the old architect's reworded question and the dropped opening year are declined; the architect question is
    # trained with its new answer, the town still stands in the new text, and nothing of the new text is a target
    assert {t["question"]: t["key_answer"] for t in targets} == {"When did the Wren Building open?": "1931",
                                                                  "Who was it that designed the Wren Building?": "Lotte Brask"}
    assert forgotten_questions(store, "v000001", "v000002", "landing/") == targets  # what the gate asks
