"""The object store on the real SeaweedFS server: "absent" means not found, never "could not look", and every error
names the operation and the object."""

import pytest
from botocore.exceptions import ClientError

from memo_pipelines.corpus.snapshot import vanished
from memo_pipelines.storage.objectstore import ObjectStore, StoreError, WriteConflict, make_s3_client
from tests.conftest import CREDENTIALS


@pytest.fixture
def locked_out(store, s3_server) -> ObjectStore:
    """The same bucket through a client with the right key id and a wrong secret: the server answers 403."""
    client = make_s3_client(s3_server.endpoint_url, CREDENTIALS["AWS_ACCESS_KEY_ID"], "not-the-secret", max_attempts=1)
    return ObjectStore(client, store.bucket)


def test_exists_tells_present_from_absent(store):
    store.put_bytes("landing/kesby.txt", b"The Kesby plant employs 340 people.")
    assert store.exists("landing/kesby.txt")
    assert not store.exists("landing/never-uploaded.txt")
    assert store.head_etag("landing/never-uploaded.txt") is None


def test_exists_raises_when_the_server_refuses_to_answer(store, locked_out):
    store.put_bytes("landing/kesby.txt", b"The Kesby plant employs 340 people.")
    for key in ("landing/kesby.txt", "landing/never-uploaded.txt"):  # refused is neither present nor absent
        with pytest.raises(StoreError, match=f"head_object s3://{store.bucket}/{key}: 403") as raised:
            locked_out.exists(key)
        assert isinstance(raised.value.__cause__, ClientError) and not raised.value.not_found


def test_reads_and_writes_that_are_refused_name_the_object(store, locked_out):
    with pytest.raises(StoreError, match=f"get_object s3://{store.bucket}/registry/promoted.json"):
        locked_out.get_json("registry/promoted.json", default={})  # refused is not "no pointer yet"
    with pytest.raises(StoreError, match=f"put_object s3://{store.bucket}/landing/new.txt"):
        locked_out.put_bytes("landing/new.txt", b"text")
    with pytest.raises(StoreError, match="list_objects .*landing/"):
        list(locked_out.list_objects("landing/"))
    with pytest.raises(StoreError, match="head_bucket"):
        locked_out.ensure_bucket()  # a bucket it may not read is not one to create


def test_a_missing_object_is_a_not_found_store_error_the_pipeline_recognises(store):
    assert store.get_json("registry/promoted.json", default={"model_id": None}) == {"model_id": None}
    with pytest.raises(StoreError, match=f"get_object s3://{store.bucket}/landing/gone.txt: NoSuchKey") as raised:
        store.get_bytes("landing/gone.txt")
    assert raised.value.not_found and vanished(raised.value)  # the snapshot quarantines such a document, it does not fail


def test_a_lost_conditional_write_is_still_a_write_conflict(store):
    etag = store.put_bytes_if("locks/training/v000001.json", b"{}", None)
    with pytest.raises(WriteConflict):
        store.put_bytes_if("locks/training/v000001.json", b"{}", None)
    store.put_bytes_if("locks/training/v000001.json", b'{"n": 1}', etag)
    with pytest.raises(WriteConflict):
        store.put_bytes_if("locks/training/v000001.json", b'{"n": 2}', etag)
