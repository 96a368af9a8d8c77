"""benchmarks/continual_eval.py: its version split, and its --quick path end to end on the tiny model (two versions)."""

import json

from benchmarks.continual_eval import DATA, hotpotqa_items, lower_triangular, main, musique_items, split_versions


def test_versions_are_a_seeded_sample_and_every_passage_lands_once():
    items = musique_items(DATA)
    first, again, other = (split_versions(items, 6, 2, seed) for seed in (0, 0, 1))
    assert [v["questions"] for v in first] == [v["questions"] for v in again]
    assert [v["questions"] for v in first] != [v["questions"] for v in other]
    keys = [d["key"] for v in first for d in v["documents"]]
    assert len(keys) == len(set(keys)) and all(v["documents"] for v in first)
    assert all(d["text"].startswith("# ") for v in first for d in v["documents"])
    hotpot = split_versions(hotpotqa_items(DATA), 6, 1, 0)
    assert all(len(v["documents"]) >= 1 for v in hotpot)


def test_lower_triangular():
    assert lower_triangular({"v1": {"v1": 0.5}, "v2": {"v1": 0.4, "v2": 0.1}})
    assert not lower_triangular({"v1": {"v1": 0.5, "v2": 0.0}, "v2": {"v2": 0.1}})


def test_quick_run_writes_the_report_card(tmp_path):
    path = tmp_path / "continual.json"
    result = main(["--quick", "--versions", "2", "--epochs", "1", "--general-size", "2", "--sample-size", "3", "--json", str(path)])
    written = json.loads(path.read_text())
    assert written["complete"] is True and written["versions"] == ["v000001", "v000002"]
    for key in ("heldout_recall_matrix", "acc", "bwt", "forgetting", "abstention", "general", "train_row_recall", "heldout_recall", "notes",
                "configuration", "models", "library_versions", "machine", "per_version", "probes"):
        assert key in written, key
    matrix = written["heldout_recall_matrix"]
    assert sorted(matrix) == written["versions"] and lower_triangular(matrix)
    assert len(written["heldout_recall"]) == len(written["train_row_recall"]) == 2
    assert written["general"]["n"] == 2 and written["general"]["base_loglik"] is not None
    assert all(set(f["seconds"]) >= {"snapshot", "reflections", "probes", "train", "merge", "evaluate", "promote"} for f in written["per_version"])
    assert result["training"][1]["parent_model"].startswith("v000001-")  # version 2 trained on version 1's promoted model
