"""The Dagster UI as a person sees it: the project's workspace.yaml and dagster.yaml served by dagster-webserver on
127.0.0.1, opened in Debian's headless Chromium, which must show the asset graph and the latest run.
Screenshots are saved under test-artifacts/ for a person to look at."""

import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import dagster as dg
import pytest

from memo_pipelines.orchestration.definitions import ASSETS
from memo_pipelines.storage.seaweed import free_port
from tests.pipeline_helpers import definitions, pipeline_resources, run_sensor

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium")
# the machine has no internet: without these flags Chromium keeps trying to reach Google's services
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--window-size=1600,1000", "--virtual-time-budget=15000"]


@pytest.fixture(scope="module", autouse=True)
def chromium_installed():
    """Skips without chromium; fails instead where MEMO_REQUIRE_SYSTEM_DEPS=1 (CI), so a green run has tested the UI."""
    if CHROMIUM is None:
        reason = "Debian's chromium is not installed (scripts/system-deps.sh installs it when run as root)"
        (pytest.fail if os.environ.get("MEMO_REQUIRE_SYSTEM_DEPS") == "1" else pytest.skip)(reason)


def browse(url: str, *args: str) -> str:
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args, url],
                              capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def wait_for(url: str, server: subprocess.Popen, timeout_s: float = 120) -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        assert server.poll() is None, f"dagster-webserver exited with {server.returncode}"
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except OSError:
            time.sleep(1)
    raise TimeoutError(f"{url} did not answer within {timeout_s} s")


@pytest.fixture
def ui(tmp_path):
    """(instance, base_url): the webserver over the project's own workspace.yaml, on an instance from dagster.yaml."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "dagster_webserver", "-h", "127.0.0.1", "-p", str(port), "-w", "workspace.yaml"],
                              cwd=ROOT, env={**os.environ, "DAGSTER_HOME": str(home)},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        base_url = f"http://127.0.0.1:{port}"
        wait_for(f"{base_url}/server_info", server)
        yield dg.DagsterInstance.from_config(str(home)), base_url
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_ui_shows_the_asset_graph_and_the_latest_run(ui, store, tiny_base, tmp_path):
    instance, base_url = ui
    resources = pipeline_resources(store, tmp_path / "work", tiny_base)
    defs = definitions(resources)
    store.put_bytes("landing/about.md", (ROOT / "memo_pipelines/sample_corpus/about.md").read_bytes())
    run_sensor(defs, instance, resources, None)
    result = defs.resolve_job_def("memo_pipeline").execute_in_process(
        instance=instance, partition_key="v000001", asset_selection=[dg.AssetKey("corpus_snapshot")])
    assert result.success

    # the first visit on localhost opens a newsletter dialog over the page; answer it the way its Skip button does
    request = urllib.request.Request(f"{base_url}/graphql", data=b'{"query": "mutation { setNuxSeen }"}',
                                     headers={"Content-Type": "application/json"})
    urllib.request.urlopen(request, timeout=30).read()

    graph = browse(f"{base_url}/asset-groups", "--dump-dom")
    for asset in ASSETS:
        assert asset.key.to_user_string() in graph
    runs = browse(f"{base_url}/runs", "--dump-dom")
    assert result.run_id in runs and "memo_pipeline" in runs

    ARTIFACTS.mkdir(exist_ok=True)
    for name, path in [("asset-graph", "/asset-groups"), ("latest-run", f"/runs/{result.run_id}")]:
        shot = ARTIFACTS / f"dagster-ui-{name}.png"
        shot.unlink(missing_ok=True)
        browse(base_url + path, f"--screenshot={shot}")
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
        print(f"screenshot: {shot.relative_to(ROOT)}")
