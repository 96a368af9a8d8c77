"""No run stalls silently: `memo wait` stops at once on a version's failure record or on a refused promotion, and a
version that failed for good before its reflections has its documents carried into the next version's manifest,
shown in `memo status`."""

from memo_pipelines.apps import cli
from memo_pipelines.apps.status import collect, render
from memo_pipelines.orchestration.failures import record_failure
from memo_pipelines.storage.layout import version_key
from memo_pipelines.storage.registry import ModelRegistry
from tests.test_upload import bucket  # noqa: F401 (a fixture)

RETRY = {"ui": "Dagster UI: Runs > r1 > Re-execute > From failure", "cli": "dagster job launch --partition v000001"}


def test_memo_wait_returns_at_once_with_the_failed_step_and_its_error(bucket, capsys):
    bucket.put_json(version_key("v000001", "manifest.json"), {"version": "v000001", "objects": [], "deleted": []})
    record_failure(bucket, "v000001", "r1", [{"step": "reflections", "error": "GeneratorUnavailable: endpoint refused\nTraceback"}],
                   "step reflections failed", RETRY)
    # a timeout far beyond the test's own: the wait must read the failure record, not run out its clock
    assert cli.main(["wait", "--versions", "1", "--timeout", "3000"]) == 1
    out = capsys.readouterr().out
    assert "version v000001 failed: reflections: GeneratorUnavailable: endpoint refused" in out and "timed out" not in out


def test_memo_wait_returns_at_once_when_a_passed_version_is_refused_promotion(bucket, tiny_base, tmp_path, capsys):
    registry = ModelRegistry(bucket, tmp_path / "models")
    registry.ensure_base("base", tiny_base)
    registry.register("v000002-b", tiny_base, {"kind": "candidate", "version": "v000002", "parent": "base"})
    registry.promote("v000002-b", "v000002 passed its gates", expected_current="base")
    # a backfill of version 1 passes its gates, but a newer version's model holds the pointer
    bucket.put_json(version_key("v000001", "evaluation.json"),
                    {"gates": [{"name": "heldout_recall", "passed": True}], "candidate": {"model_id": "v000001-a", "parent": "base"}})
    assert registry.promote_version("v000001")["promoted"] is False

    assert cli.main(["wait", "--versions", "1", "--timeout", "3000"]) == 1
    out = capsys.readouterr().out
    assert "version v000001 passed its gates but its promotion was refused: not promoted: newer version v000002 is promoted" in out


def test_a_version_that_failed_for_good_has_its_documents_carried_into_the_next_version(store, landing, tmp_path):
    tick, _ = landing
    etag = store.put_bytes("landing/kesby.txt", b"The Kesby plant employs 340 people.")
    first = tick(None)
    record_failure(store, "v000001", "r1", [{"step": "corpus_snapshot", "error": "the store did not answer"}], "", RETRY)

    store.put_bytes("landing/lorne.txt", b"The Lorne plant employs 120 people.")
    second = tick(first.cursor)
    objects = {o["key"]: o for o in store.get_json("versions/v000002/manifest.json")["objects"]}
    assert set(objects) == {"landing/kesby.txt", "landing/lorne.txt"}
    assert objects["landing/kesby.txt"]["etag"] == etag and objects["landing/kesby.txt"]["carried_from"] == "v000001"

    pointer, versions = collect(store, ModelRegistry(store, tmp_path / "models"))
    shown = render(pointer, versions)
    assert "v000001  kesby.txt: failed at corpus_snapshot; its documents are carried into v000002" in shown

    # carried once: a later version lists only its own new documents
    store.put_bytes("landing/marsh.txt", b"The Marsh plant employs 80 people.")
    tick(second.cursor)
    assert [o["key"] for o in store.get_json("versions/v000003/manifest.json")["objects"]] == ["landing/marsh.txt"]
