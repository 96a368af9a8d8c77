"""Least privilege in the bucket: the local SeaweedFS knows two identities. The uploader writes documents to landing/
and nothing else (not the registry's pointer, not the models, not a version's records); `memo upload` uses it."""

import json
import os
import subprocess
import sys

import pytest

from memo_pipelines.apps import cli
from memo_pipelines.storage import layout
from memo_pipelines.storage.objectstore import ObjectStore, StoreError, make_s3_client
from memo_pipelines.storage.seaweed import free_s3_port
from tests.conftest import CREDENTIALS, UPLOADER
from tests.test_upload import bucket  # noqa: F401 (a fixture)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def as_uploader(store: ObjectStore) -> ObjectStore:
    return ObjectStore(make_s3_client(store.client.meta.endpoint_url, *UPLOADER.values(), max_attempts=1), store.bucket)


def test_the_uploader_writes_landing_only(store):
    store.put_json(layout.PROMOTED_POINTER, {"model_id": "v000001-a"})
    uploader = as_uploader(store)
    uploader.put_bytes(f"{layout.LANDING_PREFIX}reports/kesby.txt", b"The Kesby plant employs 340 people.")
    assert store.get_bytes(f"{layout.LANDING_PREFIX}reports/kesby.txt").startswith(b"The Kesby")
    for key in (layout.PROMOTED_POINTER, "models/v000002-b/model.safetensors", "v000001/reflections.jsonl", "landing-not/x.txt"):
        with pytest.raises(StoreError) as refused:
            uploader.put_bytes(key, b"{}")
        assert refused.value.code == "AccessDenied", key
    with pytest.raises(StoreError):
        uploader.delete(layout.PROMOTED_POINTER)
    with pytest.raises(StoreError):
        uploader.get_bytes(layout.PROMOTED_POINTER)
    assert store.get_json(layout.PROMOTED_POINTER) == {"model_id": "v000001-a"}  # the pointer is as the pipeline left it


@pytest.fixture
def upload_env(bucket, monkeypatch):
    """The CLI pointed at this test's bucket (test_upload's fixture), with the uploader's credential besides the pipeline's."""
    monkeypatch.setenv("MEMO_UPLOAD_ACCESS_KEY_ID", UPLOADER["AWS_ACCESS_KEY_ID"])
    monkeypatch.setenv("MEMO_UPLOAD_SECRET_ACCESS_KEY", UPLOADER["AWS_SECRET_ACCESS_KEY"])
    return bucket


def test_memo_upload_uses_the_uploader_credential(upload_env, tmp_path, capsys):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "note.txt").write_text("The Lorne plant employs 120 people.")
    assert cli.main(["upload", str(tmp_path / "docs")]) == 0
    assert upload_env.exists(f"{layout.LANDING_PREFIX}note.txt")
    # the same call aimed at the registry is refused by the server, whatever the client asks for
    assert cli.main(["upload", "--prefix", "registry/", str(tmp_path / "docs")]) == 1
    assert "AccessDenied" in capsys.readouterr().err and not upload_env.exists("registry/note.txt")


def test_the_start_command_writes_the_identities_and_creates_the_bucket(tmp_path):
    """`python -m memo_pipelines.storage.seaweed start --uploader-credentials FILE` (scripts/demo.sh): the uploader's
    credential is generated into FILE (0600), the bucket exists before the first upload, and the uploader may write only
    landing/ of it."""
    data_dir, credentials, port = tmp_path / "weed", tmp_path / "uploader-credentials.json", free_s3_port()
    env = {**os.environ, **CREDENTIALS, "MEMO_BUCKET": "memo"}
    try:
        subprocess.run([sys.executable, "-m", "memo_pipelines.storage.seaweed", "start", "--dir", str(data_dir), "--port", str(port),
                        "--uploader-credentials", str(credentials)], cwd=ROOT, env=env, check=True, capture_output=True, timeout=120)
        assert credentials.stat().st_mode & 0o077 == 0 and (data_dir / "s3-identities.json").stat().st_mode & 0o077 == 0
        uploader = json.loads(credentials.read_text())
        store = ObjectStore(make_s3_client(f"http://127.0.0.1:{port}", uploader["AWS_ACCESS_KEY_ID"], uploader["AWS_SECRET_ACCESS_KEY"],
                                           max_attempts=1), "memo")
        store.put_bytes("landing/a.txt", b"a document")
        with pytest.raises(StoreError):
            store.put_bytes("registry/promoted.json", b"{}")
    finally:
        subprocess.run([sys.executable, "-m", "memo_pipelines.storage.seaweed", "stop", "--dir", str(data_dir)], cwd=ROOT, env=env, timeout=60)
