"""Near duplicates: documents at snapshot time and the reflection checks that gate the dataset."""

from memo_pipelines.corpus.snapshot import build_snapshot
from memo_pipelines.corpus.dedup import MinHashIndex, jaccard, shingles
from memo_pipelines.evaluation.gates import sample_facts
from memo_pipelines.reflections.expectations import validate_reflections
from memo_pipelines.reflections.synthesis import make_row

REPORT = (
    "The Kesby plant is the factory of Quillfeather Labs in the town of Kesby. It opened in 2019 beside the river Olm and "
    "employs 340 people, most of them from Kesby and Darrow. The manager of the Kesby plant is Rafael Ondo, who joined "
    "Quillfeather Labs in 2018 from Harrowgate Motors. The plant builds Tern cells, which go into the Petrel battery."
)


def test_a_flood_of_lightly_edited_copies_keeps_one_document():
    copies = {f"copy_{i}.txt": (REPORT.replace("340", str(340 + i)) + f"\nRef {i}.").encode() for i in range(20)}
    other = {"other.txt": b"Solvane Energy is a utility based in the city of Darrow. It buys Petrel batteries for its storage programme."}
    documents = {**copies, **other}
    snapshot = build_snapshot("v000001", [{"key": f"landing/{n}"} for n in documents], lambda key: (documents[key[8:]], "etag"), "landing/")
    assert [d.doc_id for d in snapshot.documents] == ["copy_0.txt", "other.txt"]
    assert len(snapshot.duplicates) == 19 and all(d["duplicate_of"] == "copy_0.txt" and d["similarity"] >= 0.8 for d in snapshot.duplicates)


def test_minhash_estimate_follows_the_exact_jaccard_similarity():
    index = MinHashIndex(threshold=0.5, permutations=256, bands=64)
    index.add("report", REPORT)
    edited = REPORT.replace("Darrow", "Marrowby").replace("2018", "2017")
    exact = jaccard(shingles(REPORT), shingles(edited))
    key, estimate = index.find(edited)
    assert key == "report" and abs(estimate - exact) < 0.1
    assert index.find("Petrel is the home storage battery sold by Quillfeather Labs, built from Tern cells.") is None


def rows_for(doc_ids):
    return [
        make_row("Who manages the Kesby plant?", "Rafael Ondo manages the Kesby plant.", doc_ids, "fact_extraction", "llm_direct", "v1", "Rafael Ondo", 0, True),
        make_row("In what year was the Kesby plant built?", "I don't know", ["a.txt"], "unanswerable", "grounded_template", "v1", "I don't know", None, True),
    ]


def test_checks_reject_unknown_sources_and_a_low_verified_share():
    good = validate_reflections(rows_for(["a.txt"]), ["a.txt"], {"passed": 9, "failed": 1}, min_verified_share=0.5)
    assert all(o["passed"] for o in good.values()) and good["verified_share"]["metadata"]["share_passed"] == 0.9
    bad = validate_reflections(rows_for(["elsewhere.txt"]), ["a.txt"], {"passed": 1, "failed": 3}, min_verified_share=0.5)
    assert not bad["valid_provenance"]["passed"] and not bad["verified_share"]["passed"]
    assert bad["fields_not_empty"]["passed"] and bad["no_duplicates"]["passed"]


def test_recall_is_never_measured_on_unanswerable_probes():
    probe_only = [r for r in rows_for(["a.txt"]) if r["step"] == "unanswerable"] + [
        make_row("What is known about Kesby?", "The Kesby plant employs 340 people.", ["a.txt"], "entity_summary", "extractive", "v1")
    ]
    assert [r["step"] for r in sample_facts(probe_only, 10)] == ["entity_summary"]
