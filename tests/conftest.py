import os
import uuid
import warnings
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from memo_pipelines.storage.objectstore import ObjectStore, make_s3_client  # noqa: E402
from memo_pipelines.storage.seaweed import SeaweedServer, free_s3_port  # noqa: E402

SAMPLE_DIR = Path(__file__).resolve().parents[1] / "memo_pipelines" / "sample_corpus"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "memo-test", "AWS_SECRET_ACCESS_KEY": "memo-test-secret"}
# the second identity of the test server: it may write only landing/ (storage/seaweed.py s3_identities)
UPLOADER = {"AWS_ACCESS_KEY_ID": "memo-test-upload", "AWS_SECRET_ACCESS_KEY": "memo-test-upload-secret"}


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A real SeaweedFS S3 server on loopback, shared by the session; each test gets its own bucket. Its volume count
    is fixed, so how many buckets it holds does not depend on the free disk of the machine running the suite (each
    bucket takes a volume; `store` deletes its bucket after the test)."""
    server = SeaweedServer(tmp_path_factory.mktemp("seaweed"), free_s3_port(), env=CREDENTIALS, max_volumes=64, uploader=UPLOADER)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def store(s3_server) -> ObjectStore:
    client = make_s3_client(s3_server.endpoint_url, CREDENTIALS["AWS_ACCESS_KEY_ID"], CREDENTIALS["AWS_SECRET_ACCESS_KEY"])
    store = ObjectStore(client, f"test-{uuid.uuid4().hex[:12]}")
    store.ensure_bucket()
    yield store
    drop_bucket(store)


def drop_bucket(store: ObjectStore) -> None:
    """Empty and delete a test's bucket, which frees its volume on the shared server."""
    try:
        keys = [obj.key for obj in store.list_objects("")]
        for start in range(0, len(keys), 1000):
            store.client.delete_objects(Bucket=store.bucket,
                                        Delete={"Objects": [{"Key": key} for key in keys[start:start + 1000]]})
        store.client.delete_bucket(Bucket=store.bucket)
    except Exception as error:  # noqa: BLE001 - a bucket left behind costs one volume, not the test's verdict
        warnings.warn(f"test bucket {store.bucket} left behind: {error}")


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory) -> Path:
    """A 2-layer Llama with a BPE tokenizer trained on the sample corpus: real transformers code, milliseconds a step."""
    from tests.tiny_models import build_tiny_llama

    texts = [p.read_text() for p in sorted(SAMPLE_DIR.glob("*.md")) + sorted(SAMPLE_DIR.glob("*.txt"))]
    return build_tiny_llama(tmp_path_factory.mktemp("models") / "tiny-llama", texts)


@pytest.fixture
def landing(store, tiny_base, tmp_path):
    """(tick, instance): tick(cursor) runs one sensor evaluation against this test's bucket."""
    import dagster as dg

    from tests.pipeline_helpers import definitions, pipeline_resources, run_sensor

    instance = dg.DagsterInstance.ephemeral()
    resources = pipeline_resources(store, tmp_path / "work", tiny_base)
    defs = definitions(resources)
    return (lambda cursor: run_sensor(defs, instance, resources, cursor)), instance
