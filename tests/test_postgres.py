"""The production instance config (configs/dagster.prod.yaml) on a real PostgreSQL started on loopback: the sensor's
version partition, a pipeline run and its materialization are stored in PostgreSQL and seen by a second instance."""

import glob
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import dagster as dg
import pytest

from memo_pipelines.storage.seaweed import free_port
from tests.pipeline_helpers import definitions, pipeline_resources, run_sensor

ROOT = Path(__file__).resolve().parents[1]


def postgres_bin() -> Path | None:
    """Debian keeps the server binaries off PATH, one folder per major version; take the newest."""
    folders = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name)) + [
        str(Path(p).parent) for p in [shutil.which("initdb")] if p]
    found = [Path(f) for f in folders if (Path(f) / "initdb").exists() and (Path(f) / "postgres").exists()]
    return found[-1] if found else None


@pytest.fixture(scope="module")
def postgres_url():
    bindir = postgres_bin()
    if bindir is None:  # where MEMO_REQUIRE_SYSTEM_DEPS=1 (CI) a missing server fails, so a green run has tested PostgreSQL
        reason = "no PostgreSQL server installed (scripts/system-deps.sh installs Debian's postgresql when run as root)"
        (pytest.fail if os.environ.get("MEMO_REQUIRE_SYSTEM_DEPS") == "1" else pytest.skip)(reason)
    # PostgreSQL refuses to run as root; Debian's package creates the `postgres` user for it
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    data = Path(tempfile.mkdtemp(prefix="memo-pg-"))
    if as_user:
        shutil.chown(data, "postgres")
    port = free_port()
    subprocess.run(as_user + [str(bindir / "initdb"), "-D", str(data / "db"), "-U", "memo", "--auth=trust", "-E", "UTF8"],
                   check=True, capture_output=True)
    server = subprocess.Popen(as_user + [str(bindir / "postgres"), "-D", str(data / "db"), "-p", str(port), "-h", "127.0.0.1",
                                         "-k", str(data)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    import psycopg2

    try:
        for _ in range(60):
            try:
                connection = psycopg2.connect(host="127.0.0.1", port=port, user="memo", dbname="postgres")
                break
            except psycopg2.OperationalError:
                assert server.poll() is None, "postgres exited during start"
                time.sleep(0.5)
        connection.autocommit = True
        connection.cursor().execute("CREATE DATABASE dagster")
        connection.close()
        yield f"postgresql+psycopg2://memo@127.0.0.1:{port}/dagster"
    finally:
        server.terminate()  # SIGTERM: smart shutdown, quick with no clients left
        server.wait(timeout=60)
        shutil.rmtree(data, ignore_errors=True)


def test_dagster_on_postgres_keeps_versions_runs_and_materializations(postgres_url, store, tiny_base, tmp_path, monkeypatch):
    import psycopg2

    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "configs" / "dagster.prod.yaml", home / "dagster.yaml")
    monkeypatch.setenv("MEMO_DAGSTER_POSTGRES_URL", postgres_url)
    instance = dg.DagsterInstance.from_config(str(home))
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"

    resources = pipeline_resources(store, tmp_path / "work", tiny_base)
    defs = definitions(resources)
    for path in sorted((ROOT / "memo_pipelines" / "sample_corpus").glob("*.md"))[:3]:
        store.put_bytes(f"landing/{path.name}", path.read_bytes())
    run_sensor(defs, instance, resources, None)
    result = defs.resolve_job_def("memo_pipeline").execute_in_process(
        instance=instance, partition_key="v000001", asset_selection=[dg.AssetKey("corpus_snapshot")])
    assert result.success

    # a second process (webserver, daemon) configured by the same file sees the same state
    other = dg.DagsterInstance.from_config(str(home))
    assert other.get_dynamic_partitions("corpus_versions") == ["v000001"]
    assert other.get_run_by_id(result.run_id).is_success
    latest = other.get_latest_materialization_event(dg.AssetKey("corpus_snapshot"))
    assert latest.dagster_event.partition == "v000001"
    assert latest.asset_materialization.metadata["documents"].value == 3

    with psycopg2.connect(postgres_url.replace("postgresql+psycopg2", "postgresql")) as connection:
        cursor = connection.cursor()
        cursor.execute("SELECT run_id, status FROM runs")
        assert cursor.fetchall() == [(result.run_id, "SUCCESS")]
