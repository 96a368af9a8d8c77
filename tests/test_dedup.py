"""Near duplicates: documents at snapshot time and the reflection checks that gate the dataset."""

from memo_pipelines.corpus.snapshot import build_snapshot
from memo_pipelines.corpus.dedup import MinHashIndex, jaccard, shingles
from memo_pipelines.evaluation.metrics import sample_facts
from memo_pipelines.reflections.expectations import validate_reflections
from memo_pipelines.reflections.synthesis import make_row

REPORT = (
    "The Kesby plant is the factory of Quillfeather Labs in the town of Kesby. It opened in 2019 beside the river Olm and "
    "employs 340 people, most of them from Kesby and Darrow. The manager of the Kesby plant is Rafael Ondo, who joined "
    "Quillfeather Labs in 2018 from Harrowgate Motors. The plant builds Tern cells, which go into the Petrel battery."
)


def test_lightly_edited_copies_keep_the_newest_and_record_the_others_as_superseded_with_what_changed():
    # 20 copies of a report, each uploaded a minute after the last with a new head count; the oldest sorts first by key
    copies = {f"copy_{i:02d}.txt": (REPORT.replace("340", str(340 + i)) + f"\nRef {i}.").encode() for i in range(20)}
    other = {"other.txt": b"Solvane Energy is a utility based in the city of Darrow. It buys Petrel batteries for its storage programme."}
    documents = {**copies, **other}
    manifest = [{"key": f"landing/{n}", "last_modified": f"2026-03-01T09:{i:02d}:00+00:00"} for i, n in enumerate(documents)]
    snapshot = build_snapshot("v000001", manifest, lambda key: (documents[key[8:]], "etag"), "landing/")
    assert [d.doc_id for d in snapshot.documents] == ["copy_19.txt", "other.txt"]
    assert "employs 359 people" in snapshot.documents[0].text
    assert snapshot.duplicates == []  # none of them is an exact copy: nothing was dropped unrecorded
    assert [s["doc_id"] for s in snapshot.superseded] == [f"copy_{i:02d}.txt" for i in range(19)]
    assert all(s["superseded_by"] == "copy_19.txt" and s["similarity"] >= 0.8 for s in snapshot.superseded)
    assert "'340' -> '359'" in snapshot.superseded[0]["reason"] and "2026-03-01T09:19:00" in snapshot.superseded[0]["reason"]


def test_without_times_the_later_key_wins_and_exact_copies_are_still_counted():
    policy = ("Staff may claim up to 20 days of travel a year. Claims go to the finance office of Quillfeather Labs within a month "
              "of the trip, with the receipts and the name of the project that paid for it. Trains are booked in second class, and "
              "flights only for trips of more than six hours by train. The travel office in the Wren Building answers questions.")
    documents = {"policy_v1.txt": policy.encode(), "policy_v1_copy.txt": policy.encode(), "policy_v2.txt": policy.replace("20 days", "25 days").encode()}
    snapshot = build_snapshot("v000001", [{"key": f"landing/{n}"} for n in documents], lambda key: (documents[key[8:]], "etag"), "landing/")
    assert [d.doc_id for d in snapshot.documents] == ["policy_v2.txt"]
    assert snapshot.duplicates == [{"doc_id": "policy_v1_copy.txt", "duplicate_of": "policy_v1.txt"}]
    [superseded] = snapshot.superseded
    assert superseded["doc_id"] == "policy_v1.txt" and superseded["superseded_by"] == "policy_v2.txt"
    assert "'20' -> '25'" in superseded["reason"] and "later key" in superseded["reason"]


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


def test_an_updated_policy_landing_beside_the_old_one_keeps_the_newer_and_says_so(store, landing, tiny_base, tmp_path, monkeypatch, capsys):
    import time

    import dagster as dg

    from memo_pipelines.orchestration.definitions import ASSETS
    from tests.pipeline_helpers import pipeline_resources
    from tests.test_pipeline import memo_status

    tick, instance = landing
    old = REPORT.encode()
    new = REPORT.replace("employs 340 people", "employs 410 people").encode()
    store.put_bytes("landing/kesby_report_final.txt", old)  # the later key in sort order is the older upload
    time.sleep(1.5)  # the listing's LastModified has one-second resolution
    store.put_bytes("landing/kesby_report.txt", new)
    assert [r.partition_key for r in tick(None).run_requests] == ["v000001"]
    resources = pipeline_resources(store, tmp_path / "work", tiny_base)
    result = dg.materialize(ASSETS, selection=["corpus_snapshot"], partition_key="v000001", resources=resources, instance=instance)
    metadata = result.asset_materializations_for_node("corpus_snapshot")[0].metadata
    assert metadata["documents"].value == 1 and metadata["duplicates"].value == 0
    table = metadata["superseded"].value
    assert "| kesby_report_final.txt | kesby_report.txt |" in table and "'340' -> '410'" in table
    snapshot = store.get_json("versions/v000001/snapshot.json")
    assert [d["doc_id"] for d in snapshot["documents"]] == ["kesby_report.txt"] and "410 people" in snapshot["documents"][0]["text"]

    status = memo_status(store, tmp_path, monkeypatch, capsys)
    assert "superseded near-duplicates (the newer document was kept) (1):" in status
    assert "v000001  kesby_report_final.txt by kesby_report.txt" in status and "'340' -> '410'" in status
