"""One test drives the real daemon: `dagster-daemon run` over a temporary DAGSTER_HOME (the project's dagster.yaml: queued
runs, one at a time) and a workspace serving the project's definitions on the test bucket with a tiny model. Uploads to
SeaweedFS must be picked up by the landing sensor ticking in that daemon and run by its run queue and launcher: a first
version that fails is recorded in the bucket by the run-failure sensor, and the next one ends as the registry's promoted
model. Nothing here calls a sensor or materialises an asset.

Marked `daemon` (deselect with -m "not daemon"): about 3 to 4 minutes on 2 busy cores."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from memo_pipelines.processes import stop_process_group
from tests.conftest import CREDENTIALS, SAMPLE_DIR
from tests.pipeline_helpers import pipeline_resources

ROOT = Path(__file__).resolve().parents[1]
DEADLINE_S = 360


def processes_with(marker: str) -> list[int]:
    """Processes whose environment holds `marker` (the daemon's own DAGSTER_HOME): the daemon, its code server and run workers."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and marker.encode() in (proc / "environ").read_bytes().split(b"\0"):
                found.append(int(proc.name))
        except OSError:
            continue
    return found


@pytest.fixture
def daemon(store, tiny_base, tmp_path):
    """A running `dagster-daemon` over a temporary DAGSTER_HOME and a workspace pointing at tests/daemon_location.py."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    workspace = tmp_path / "workspace.yaml"
    workspace.write_text(json.dumps({"load_from": [{"python_module": {"module_name": "tests.daemon_location", "attribute": "defs",
                                                                      "working_directory": str(ROOT)}}]}))
    spec = {"endpoint_url": store.client.meta.endpoint_url, "bucket": store.bucket, "work_dir": str(tmp_path / "work"), "base_dir": str(tiny_base),
            "trainer": {"epochs": 8}, "evaluation": {"general_size": 5}}
    env = {**os.environ, **CREDENTIALS, "DAGSTER_HOME": str(home), "MEMO_DAEMON_SPEC": json.dumps(spec), "HF_HUB_OFFLINE": "1",
           "GX_ANALYTICS_ENABLED": "false", "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(ROOT)}
    # created here, before the daemon and its code server start: two processes creating the SQLite schema at once
    # can leave two alembic heads, and then the code location fails to load
    instance = dg.DagsterInstance.from_config(str(home))
    instance.get_runs(limit=1)
    log = (tmp_path / "daemon.log").open("w")
    process = subprocess.Popen([str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", str(workspace)], cwd=ROOT, env=env,
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield instance, process, tmp_path / "daemon.log"
    finally:
        stop_process_group(process.pid, child=process)
        for pid in processes_with(f"DAGSTER_HOME={home}"):  # a run worker the launcher started in a session of its own
            stop_process_group(pid) if os.getpgid(pid) == pid else os.kill(pid, 9)
        log.close()


def wait_for(condition, what: str, process: subprocess.Popen, log: Path, timeout_s: float = DEADLINE_S):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, f"dagster-daemon exited with {process.returncode}:\n{log.read_text()[-4000:]}"
        if found := condition():
            return found
        time.sleep(2)
    pytest.fail(f"{what}: not within {timeout_s} s; daemon log:\n{log.read_text()[-4000:]}")


@pytest.mark.daemon
def test_uploads_become_versions_a_failed_one_is_recorded_and_the_next_is_promoted_by_the_running_daemon(
        daemon, store, tiny_base, tmp_path, monkeypatch, capsys):
    instance, process, log = daemon
    registry = pipeline_resources(store, tmp_path / "probe", tiny_base)["registry"].workspace().registry

    # version 1 holds only an unreadable file: quarantined, no reflections, so its blocking check fails the run
    store.put_bytes("landing/setup.exe", b"MZ\x90\x00 not a document")
    wait_for(lambda: store.exists("versions/v000001/manifest.json"), "the landing sensor made version 1", process, log)
    store.put_bytes("landing/people_rafael_ondo.txt", (SAMPLE_DIR / "people_rafael_ondo.txt").read_bytes())

    def promoted_v2():
        runs = {r.tags.get("memo/version"): r for r in instance.get_runs()}
        if "v000002" in runs and runs["v000002"].status == dg.DagsterRunStatus.FAILURE:
            pytest.fail("\n".join(str(e.message) for e in instance.all_logs(runs["v000002"].run_id) if e.level >= 40)[-4000:])
        finished = "v000002" in runs and runs["v000002"].status == dg.DagsterRunStatus.SUCCESS
        return finished and (registry.promoted_id() or "").startswith("v000002-") and store.exists("versions/v000001/failure.json")

    wait_for(promoted_v2, "version 2's run finished and promoted, version 1's failure recorded", process, log)
    runs = {r.tags["memo/version"]: r for r in instance.get_runs()}
    assert {v: r.status for v, r in runs.items()} == {"v000001": dg.DagsterRunStatus.FAILURE, "v000002": dg.DagsterRunStatus.SUCCESS}
    assert all(r.tags["dagster/sensor_name"] == "landing_sensor" for r in runs.values())
    assert instance.get_dynamic_partitions("corpus_versions") == ["v000001", "v000002"]
    manifest = store.get_json("versions/v000002/manifest.json")
    assert [o["key"] for o in manifest["objects"]] == ["landing/people_rafael_ondo.txt"] and manifest["objects"][0]["last_modified"]

    # written by the run-failure sensor ticking in the daemon, read back by memo status with the daemon's instance
    failure = store.get_json("versions/v000001/failure.json")
    assert failure["run_id"] == runs["v000001"].run_id and [s["step"] for s in failure["steps"]] == ["reflections"]
    assert "fields_not_empty" in failure["steps"][0]["error"]
    from tests.test_pipeline import memo_status

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    rows = {line.split()[0]: line for line in memo_status(store, tmp_path, monkeypatch, capsys).splitlines() if line.startswith("v0")}
    assert "failed at reflections" in rows["v000001"] and "FAILURE" in rows["v000001"]
    assert "promoted" in rows["v000002"] and "SUCCESS" in rows["v000002"]
