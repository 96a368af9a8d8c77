"""Reflections that failed a blocking check stay out of every later version: never replayed, never a retention target,
never probed; a later run whose checks pass puts them back. Over the real asset graph, S3 and a tiny model."""

import dagster as dg

from memo_pipelines.orchestration.definitions import ASSETS
from memo_pipelines.memory.strategies import UpdateConfig, per_version_replay
from memo_pipelines.storage.history import live_earlier_reflections, live_records
from resources import GeneratorResource
from tests.pipeline_helpers import definitions, pipeline_resources, run_sensor
from tests.test_pipeline import memo_status, upload

THROUGH_TRAINING = ["corpus_snapshot", "reflections", "heldout_probes", "memory_adapter"]


def test_reflections_that_failed_a_blocking_check_are_never_replayed_until_a_passing_run(store, tiny_base, tmp_path, monkeypatch, capsys):
    instance = dg.DagsterInstance.ephemeral()
    resources = pipeline_resources(store, tmp_path / "work", tiny_base, trainer={"epochs": 2})
    defs = definitions(resources)
    upload(store, ["plant_kesby.txt"])
    tick = run_sensor(defs, instance, resources, cursor=None)

    # a verified share above 100 % cannot be met: the blocking check fails and nothing downstream runs
    strict = {**resources, "generator": GeneratorResource(min_verified_share=1.01)}
    first = dg.materialize(ASSETS, selection=THROUGH_TRAINING, partition_key="v000001", resources=strict, instance=instance, raise_on_error=False)
    checks = {e.check_name: e for e in first.get_asset_check_evaluations()}
    assert checks["verified_share"].passed is False and checks["verified_share"].metadata["checked"].value > 0
    assert not first.asset_materializations_for_node("memory_adapter")
    v1_rows = store.get_jsonl("versions/v000001/reflections.jsonl")
    assert any("340" in row["answer"] for row in v1_rows)  # the rows stay in the bucket for a person to look at
    assert store.get_json("versions/v000001/reflections_checks.json")["failed"] == ["verified_share"]

    upload(store, ["product_tern.md"])
    run_sensor(defs, instance, resources, cursor=tick.cursor)
    second = dg.materialize(ASSETS, selection=THROUGH_TRAINING, partition_key="v000002", resources=resources, instance=instance)
    adapter = second.asset_materializations_for_node("memory_adapter")[0].metadata
    assert adapter["replay_reflections"].value == 0
    assert adapter["retired_reflections"].value["failed_checks"] == len(v1_rows)
    examples = (tmp_path / "work" / "runs" / "v000002" / "adapter" / "examples.jsonl").read_text()
    assert "340" not in examples  # no fact of the failed version is trained
    ws = resources["registry"].workspace()
    assert set(live_records(ws.store, "v000002", "reflections.jsonl")[0]) == set()

    status = memo_status(store, tmp_path, monkeypatch, capsys)
    assert "reflections failed checks: verified_share" in {line.split()[0]: line for line in status.splitlines() if line.startswith("v0")}["v000001"]

    # re-run with the checks passing: version 1's rows are replayed again
    rerun = dg.materialize(ASSETS, selection=["reflections"], partition_key="v000001", resources=resources, instance=instance)
    assert all(e.passed for e in rerun.get_asset_check_evaluations())
    live, retired = live_earlier_reflections(ws.store, "v000002")
    replay = [r for rows in per_version_replay(live, sorted(live), UpdateConfig(replay_size=64, replay_share=0.0), 0, "v000002").values() for r in rows]
    assert replay and {r["version"] for r in replay} == {"v000001"} and retired["failed_checks"] == 0
