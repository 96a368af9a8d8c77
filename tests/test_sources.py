"""Sources that cannot lie: a memory answer is cited only to reflections whose key answer it states, and only to
documents that are still in the corpus (a real bucket, real manifests from the landing diff, a registered lineage)."""

import pytest

from memo_pipelines.corpus.landing import Cursor, diff_landing, manifest
from memo_pipelines.qa import recalled, token_f1
from memo_pipelines.protocol import SourceIndex
from memo_pipelines.storage.layout import LANDING_PREFIX, version_key
from memo_pipelines.storage.registry import ModelRegistry

KESBY_Q = "How many people does the Kesby plant employ?"
KESBY = {"id": "kesby-staff", "question": KESBY_Q, "answer": "The Kesby plant employs 340 people.", "key_answer": "340 people",
         "step": "fact_extraction", "source_doc_ids": ["plant_kesby.txt"]}


def test_a_wrong_number_gets_no_source():
    wrong = "The Kesby plant employs 10 people."
    assert token_f1(wrong, KESBY["answer"]) >= 0.6  # word overlap alone would have cited the document that says 340
    assert SourceIndex([KESBY]).attribute(KESBY_Q, wrong) == []


def test_the_right_number_is_cited_to_its_document():
    assert SourceIndex([KESBY]).attribute(KESBY_Q, "It employs 340 people.") == [KESBY]
    # word-bounded: 1340 people is not 340 people
    assert SourceIndex([KESBY]).attribute(KESBY_Q, "It employs 1340 people.") == []


def test_the_closest_question_wins_among_rows_that_state_the_answer():
    founded = {"id": "kesby-founded", "question": "In which year was the Kesby plant opened?", "answer": "1998", "key_answer": "1998",
               "step": "fact_extraction", "source_doc_ids": ["plant_kesby.txt"]}
    varga = {"id": "varga-joined", "question": "When did Odile Varga join Quillfeather Labs?", "answer": "1998", "key_answer": "1998",
             "step": "fact_extraction", "source_doc_ids": ["people_odile_varga.txt"]}
    index = SourceIndex([founded, varga])
    assert index.attribute("When was the Kesby plant opened?", "It opened in 1998.") == [founded]


def test_a_fact_about_another_entity_is_not_cited_for_the_one_asked_about():
    lorne = {"id": "lorne-manager", "question": "Who is the manager of the Lorne plant?", "answer": "The manager of the Lorne plant is Tomasz Reyes.",
             "key_answer": "Tomasz Reyes", "step": "fact_extraction", "source_doc_ids": ["plant_lorne.txt"]}
    question = "Who is the manager of the Kesby plant?"
    # the memory mixed two plants up: the name is right for Lorne, and Lorne's document does not say it of Kesby
    assert SourceIndex([lorne]).attribute(question, "The manager of the Kesby plant is Tomasz Reyes.") == []
    assert SourceIndex([lorne]).attribute("Who is the manager of the Lorne plant?", "The manager of the Lorne plant is Tomasz Reyes.") == [lorne]
    kesby = {**lorne, "id": "kesby-manager", "question": question, "answer": "The manager of the Kesby plant is Rafael Ondo.",
             "key_answer": "Rafael Ondo", "source_doc_ids": ["plant_kesby.txt"]}
    assert SourceIndex([lorne, kesby]).attribute(question, "Rafael Ondo manages the Kesby plant.") == [kesby]
    # a row whose key answer is what the question already says proves nothing about the answer
    tern = {**lorne, "id": "tern-plant", "question": "At which plant is the Tern cell made?", "answer": "The Tern cell is made at the Kesby plant.",
            "key_answer": "Kesby plant", "source_doc_ids": ["product_tern.md"]}
    assert SourceIndex([lorne, tern]).attribute(question, "The manager of the Kesby plant is Tomasz Reyes.") == []
    # a joined answer: the sentence that states the number is about the Tern cell, not the Kesby plant
    joined = {**lorne, "id": "tern-joined", "question": "How many hours does the Tern cell store, and where is it made?",
              "answer": "The Tern cell stores 180 watt-hours. The Tern cell is made at the Kesby plant.", "key_answer": "180",
              "source_doc_ids": ["product_tern.md"]}
    assert SourceIndex([joined]).attribute(KESBY_Q, "The Kesby plant employs 180 people.") == []
    assert SourceIndex([joined]).attribute("How much does the Tern cell store?", "The Tern cell stores 180 watt-hours.") == [joined]


def test_unanswerable_probes_never_give_sources():
    probe = {"id": "probe", "question": "What is the favourite colour of Rafael Ondo?", "answer": "I don't know.",
             "key_answer": "I don't know.", "step": "unanswerable", "source_doc_ids": ["people_rafael_ondo.txt"]}
    index = SourceIndex([probe, {**probe, "id": "probe-other-step", "step": "verification"}])
    assert index.attribute(probe["question"], "I don't know.") == []


def land(store, version: str, documents: dict[str, str | None], cursor: Cursor) -> Cursor:
    """Put (or delete, for None) documents in the landing folder and write the version's manifest as the sensor does."""
    for name, text in documents.items():
        if text is None:
            store.delete(LANDING_PREFIX + name)
        else:
            store.put_bytes(LANDING_PREFIX + name, text.encode())
    diff = diff_landing(list(store.list_objects(LANDING_PREFIX)), cursor)
    store.put_json(version_key(version, "manifest.json"), manifest(version, diff))
    return Cursor(diff.seen, [], version)


def fact(row_id: str, question: str, key: str, *docs: str) -> dict:
    return {"id": row_id, "question": question, "answer": f"{key}.", "key_answer": key, "step": "fact_extraction", "source_doc_ids": list(docs)}


@pytest.fixture
def lineage(store, tiny_base, tmp_path):
    """v000001 lands three documents; v000002 deletes the Kesby one and rewrites the Lorne one; v000003 (a version
    whose model was never promoted) only adds a document. The promoted model is v000002's, trained on top of v000001's."""
    cursor = land(store, "v000001", {"plant_kesby.txt": "The Kesby plant employs 340 people.",
                                     "plant_lorne.txt": "The Lorne plant employs 80 people.",
                                     "about.md": "Quillfeather Labs was founded in 1987."}, Cursor())
    store.put_jsonl(version_key("v000001", "reflections.jsonl"), [
        fact("kesby", KESBY_Q, "340 people", "plant_kesby.txt"),
        fact("lorne-old", "How many people does the Lorne plant employ?", "80 people", "plant_lorne.txt"),
        fact("owner", "Which company owns the Kesby plant?", "Quillfeather Labs", "plant_kesby.txt", "about.md"),
    ])
    cursor = land(store, "v000002", {"plant_kesby.txt": None, "plant_lorne.txt": "The Lorne plant employs 120 people."}, cursor)
    store.put_jsonl(version_key("v000002", "reflections.jsonl"), [
        fact("lorne-new", "How many people does the Lorne plant employ?", "120 people", "plant_lorne.txt")])
    land(store, "v000003", {"plant_wren.txt": "The Wren building has 4 floors."}, cursor)
    registry = ModelRegistry(store, tmp_path / "models")
    registry.register("v000001-m", tiny_base, {"kind": "candidate", "version": "v000001", "parent": None})
    registry.register("v000002-m", tiny_base, {"kind": "candidate", "version": "v000002", "parent": "v000001-m"})
    return registry


def test_a_deleted_document_is_never_cited(lineage):
    index = SourceIndex.from_registry(lineage, "v000002-m")
    assert index.attribute(KESBY_Q, "The Kesby plant employs 340 people.") == []
    cited = {d for row in index.reflections for d in row["source_doc_ids"]}
    assert "plant_kesby.txt" not in cited and "about.md" in cited
    # the row that joined the deleted document with a live one keeps only the live one
    [owner] = index.attribute("Which company owns the Kesby plant?", "Quillfeather Labs owns it.")
    assert owner["source_doc_ids"] == ["about.md"]


def test_a_rewritten_document_is_cited_only_for_its_new_text(lineage):
    index = SourceIndex.from_registry(lineage, "v000002-m")
    question = "How many people does the Lorne plant employ?"
    assert index.attribute(question, "The Lorne plant employs 80 people.") == []
    assert [r["id"] for r in index.attribute(question, "It employs 120 people.")] == ["lorne-new"]


def test_a_deletion_after_the_promoted_version_still_counts(lineage, store):
    # sources are as of now: a version whose model is not promoted yet can still take a document away
    land(store, "v000004", {"about.md": None, "plant_wren.txt": None, "plant_tern.txt": "The Tern ships in May."},
         Cursor({o.key: o.etag for o in store.list_objects(LANDING_PREFIX)}, [], "v000003"))
    index = SourceIndex.from_registry(lineage, "v000002-m")
    assert index.attribute("Which company owns the Kesby plant?", "Quillfeather Labs") == []
    assert [r["id"] for r in index.reflections] == ["lorne-new"]


def test_a_version_learned_late_is_cited_and_rows_blocked_by_failed_checks_are_not(lineage, store, tiny_base):
    # v000003 was rejected by its gates; v000004's update learned its rows as pending. v000004's own reflections failed
    # a blocking check (its update trained them anyway, as a re-executed `continue` once did): never cited
    from memo_pipelines.storage.history import rows_digest

    wren = fact("wren", "How many floors does the Wren building have?", "4 floors", "plant_wren.txt")
    store.put_jsonl(version_key("v000003", "reflections.jsonl"), [wren])
    land(store, "v000004", {"plant_tern.txt": "The Tern ships in May."}, Cursor({o.key: o.etag for o in store.list_objects(LANDING_PREFIX)}, [], "v000003"))
    tern = [fact("tern", "When does the Tern ship?", "May", "plant_tern.txt")]
    store.put_jsonl(version_key("v000004", "reflections.jsonl"), tern)
    store.put_json(version_key("v000004", "reflections_checks.json"), {"passed": False, "failed": ["verified_share"], "reflections_sha256": rows_digest(tern)})
    lineage.register("v000003-m", tiny_base, {"kind": "candidate", "version": "v000003", "parent": "v000002-m",
                                              "update": {"learned_versions": ["v000001", "v000002", "v000003"]}})
    lineage.register("v000004-m", tiny_base, {"kind": "candidate", "version": "v000004", "parent": "v000002-m",
                                              "update": {"learned_versions": ["v000001", "v000002", "v000003", "v000004"]}})

    index = SourceIndex.from_registry(lineage, "v000004-m")
    assert [r["id"] for r in index.attribute("How many floors does the Wren building have?", "It has 4 floors.")] == ["wren"]
    assert index.attribute("When does the Tern ship?", "In May.") == []
    assert {r["id"] for r in index.reflections} == {"owner", "lorne-new", "wren"}


def musique_rows() -> list[dict]:
    """MuSiQue's gold single-hop sub-questions as reflections, one document per supporting passage (public data the
    rules were not written for)."""
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "shared" / "data" / "musique" / "musique_train.json"
    if not path.exists():
        pytest.skip(f"public data not found at {path}")
    rows = []
    for item in json.loads(path.read_text()):
        for hop in item["question_decomposition"]:
            if "#" not in hop["question"]:  # a later hop's question names the earlier answer only as #k
                rows.append(fact(f"{item['id']}-{hop['id']}", hop["question"], hop["answer"], f"{item['id']}-{hop['paragraph_support_idx']}.txt"))
    return rows


def test_every_row_is_found_through_the_index_on_public_questions():
    # the index looks rows up by their key answer's first word: a memory answer that states a key answer anywhere in
    # its words, after any other words, still finds its row among hundreds
    rows = musique_rows()
    index = SourceIndex(rows)
    assert len(index.reflections) > 100
    for row in index.reflections:
        if recalled(row["question"], row["key_answer"]):
            continue  # a key answer the question states is no evidence (test above)
        cited = index.attribute(row["question"], f"As far as I know, it is {row['key_answer']}, I think.")
        assert row in cited, row
    # an answer that states none of the key answers is cited to nothing
    assert index.attribute(rows[0]["question"], "Nobody can say for sure.") == []


def test_a_fact_of_another_relation_about_the_same_subject_is_not_a_source():
    # the demo's memory said "The manager of the Kesby plant is Quillfeather Labs." and it was cited to the Kesby
    # document, whose row says the company owns the plant: same subject, same name, another fact
    owner = {"id": "kesby-owner", "question": "Which company owns the Kesby plant?", "answer": "Quillfeather Labs owns the Kesby plant.",
             "key_answer": "Quillfeather Labs", "step": "fact_extraction", "source_doc_ids": ["plant_kesby.txt"]}
    manager = {**owner, "id": "kesby-manager", "question": "Who is the manager of the Kesby plant?",
               "answer": "The manager of the Kesby plant is Rafael Ondo.", "key_answer": "Rafael Ondo"}
    index = SourceIndex([owner, manager])
    assert index.attribute("Who is the manager of the Kesby plant?", "The manager of the Kesby plant is Quillfeather Labs.") == []
    # the same relation in other words and endings is still found
    assert index.attribute("Who manages the Kesby plant?", "Rafael Ondo manages it.") == [manager]
    assert index.attribute("Who is the owner of the Kesby plant?", "Quillfeather Labs.") == [owner]
