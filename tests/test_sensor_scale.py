"""The landing sensor at scale on a real S3 server: 10,000 objects, rewrites in place, deletions, documents landing
while a version is in flight, S3 refusing requests mid-tick, and a daemon restarted from an uncommitted cursor.
Every (key, ETag) that was in the bucket at a committed tick ends in exactly one version's manifest."""

import json
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import boto3
import pytest
from botocore.exceptions import ClientError

from memo_pipelines.storage.layout import SENSOR_STATE_PREFIX as STATE_PREFIX
from tests.test_sensor import requested, versions


@pytest.fixture
def refuse():
    """S3 refusing requests, injected at the edge: a botocore hook on the default session that every client copies."""
    rules: dict[str, object] = {}

    def hook(model, params, **_):  # params are the API call's own arguments at this event
        rule = rules.get(model.name)
        if rule is not None and rule(params):
            raise ClientError({"Error": {"Code": "ServiceUnavailable", "Message": "injected refusal"}}, model.name)

    boto3.setup_default_session()
    boto3.DEFAULT_SESSION.events.register("before-parameter-build.s3", hook)
    yield rules
    boto3.DEFAULT_SESSION.events.unregister("before-parameter-build.s3", hook)


def put_many(store, bodies: dict[str, bytes]) -> dict[str, str]:
    with ThreadPoolExecutor(10) as pool:
        return dict(zip(bodies, pool.map(lambda kv: store.put_bytes(*kv), bodies.items())))


def delete_many(store, keys: list[str]) -> None:
    with ThreadPoolExecutor(10) as pool:
        list(pool.map(store.delete, keys))


def manifests(store, instance) -> dict[str, dict]:
    return {v: store.get_json(f"versions/{v}/manifest.json") for v in versions(instance)}


def test_ten_thousand_objects_each_document_lands_in_exactly_one_version(store, landing, refuse):
    tick, instance = landing
    keys = [f"landing/bulk/{i:05d}.txt" for i in range(10_000)]
    observed: set[tuple[str, str]] = set()  # (key, etag) pairs present at some committed tick
    bucket = put_many(store, {key: f"document {key}".encode() for key in keys})

    first = tick(None)
    observed |= set(bucket.items())
    assert requested(first) == [("v000001", "v000001")]
    assert len(store.get_json("versions/v000001/manifest.json")["objects"]) == 10_000
    # the cursor names a state object in the bucket instead of carrying 10,000 ETags itself
    assert len(first.cursor) < 300 and json.loads(first.cursor)["objects"] == 10_000

    # while v000001 is in flight: 100 rewritten in place, 100 deleted, 200 new
    bucket.update(put_many(store, {key: b"second draft of " + key.encode() for key in keys[:100]}))
    delete_many(store, keys[100:200])
    for key in keys[100:200]:
        bucket.pop(key)
    bucket.update(put_many(store, {f"landing/new/{i:04d}.md": f"# New {i}".encode() for i in range(200)}))

    second = tick(first.cursor)
    observed |= set(bucket.items())
    assert requested(second) == [("v000002", "v000002")]
    v2 = store.get_json("versions/v000002/manifest.json")
    assert len(v2["objects"]) == 300 and v2["deleted"] == keys[100:200]

    # the daemon died after adding v000002 but before committing its cursor; more documents landed meanwhile
    bucket.update(put_many(store, {f"landing/late/{i:03d}.txt": b"late" + bytes([i]) for i in range(50)}))
    bucket.update(put_many(store, {f"landing/new/{i:04d}.md": f"# New {i}, revised".encode() for i in range(10)}))
    restarted = tick(first.cursor)
    observed |= set(bucket.items())
    # v000002 is requested again under the same run key (Dagster drops the duplicate); only the news make v000003
    assert requested(restarted) == [("v000002", "v000002"), ("v000003", "v000003")]
    v3 = store.get_json("versions/v000003/manifest.json")
    assert len(v3["objects"]) == 60 and v3["deleted"] == []

    # S3 refuses a listing page mid-tick: the tick fails, nothing is assigned
    store.put_bytes("landing/after-refusal.txt", b"waits for a healthy tick")
    refuse["ListObjectsV2"] = lambda params: "StartAfter" in params or "ContinuationToken" in params
    with pytest.raises(Exception, match="injected refusal"):
        tick(restarted.cursor)
    assert versions(instance) == ["v000001", "v000002", "v000003"]
    refuse.clear()

    # S3 refuses the sensor's state write after the manifest was written: the next tick rewrites that manifest
    refuse["PutObject"] = lambda params: params["Key"].startswith(STATE_PREFIX)
    with pytest.raises(Exception, match="injected refusal"):
        tick(restarted.cursor)
    refuse.clear()
    assert versions(instance) == ["v000001", "v000002", "v000003"]
    store.delete("landing/late/000.txt")
    bucket.pop("landing/late/000.txt")
    bucket["landing/after-refusal-2.txt"] = store.put_bytes("landing/after-refusal-2.txt", b"also waits")
    bucket["landing/after-refusal.txt"] = store.etag("landing/after-refusal.txt")
    fourth = tick(restarted.cursor)
    observed |= set(bucket.items())
    assert requested(fourth) == [("v000004", "v000004")]
    v4 = store.get_json("versions/v000004/manifest.json")
    assert {o["key"] for o in v4["objects"]} == {"landing/after-refusal.txt", "landing/after-refusal-2.txt"}
    assert v4["deleted"] == ["landing/late/000.txt"]

    assert requested(tick(fourth.cursor)) == []  # a quiet bucket makes no version
    assert len(list(store.list_objects(STATE_PREFIX))) <= 2  # old sensor states are cleaned up

    # exactly once: no (key, etag) in two manifests, every observed one in some manifest, each deletion recorded once
    assigned = Counter((o["key"], o["etag"]) for m in manifests(store, instance).values() for o in m["objects"])
    assert max(assigned.values()) == 1
    assert observed <= set(assigned)
    assert set(bucket.items()) <= set(assigned)
    deletions = Counter(key for m in manifests(store, instance).values() for key in m["deleted"])
    assert sorted(deletions) == sorted(keys[100:200] + ["landing/late/000.txt"]) and max(deletions.values()) == 1
