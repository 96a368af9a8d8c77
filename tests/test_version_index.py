"""The versions index on the real SeaweedFS server: a run learns which versions have which records from one object,
not from listing every object of every version, and concurrent writers never lose each other's entries."""

import threading

from memo_pipelines.apps.status import version_stages
from memo_pipelines.storage import layout
from memo_pipelines.storage.history import document_changes, version_records


def count_listings(store) -> list[str]:
    """The prefixes of every ListObjectsV2 call the store's client makes from now on (botocore's own event hook)."""
    prefixes: list[str] = []
    store.client.meta.events.register("before-parameter-build.s3.ListObjectsV2", lambda params, **_: prefixes.append(params.get("Prefix", "")))
    return prefixes


def write_version(store, version: str) -> None:
    store.put_json(layout.version_key(version, "manifest.json"), {"version": version, "objects": [{"key": f"landing/{version}.txt"}], "deleted": []})
    store.put_json(layout.version_key(version, "snapshot.json"), {"documents": []})
    store.put_bytes(layout.archived_document_key(version, "manifest.json"), b"a document that shares a record's name")
    store.put_bytes(layout.version_key(version, "adapter/adapter_model.safetensors"), b"weights")


def test_a_run_reads_which_versions_have_which_records_without_listing_the_bucket(store):
    for number in range(1, 13):
        write_version(store, f"v{number:06d}")
    store.put_json(layout.version_key("v000012", "reflections.jsonl"), {})
    listings = count_listings(store)

    records = version_records(store, ["manifest.json", "reflections.jsonl"])
    assert sorted(records) == [f"v{n:06d}" for n in range(1, 13)]
    assert records["v000001"] == ["manifest.json"]  # the archived raw/manifest.json is a document, not the record
    assert sorted(records["v000012"]) == ["manifest.json", "reflections.jsonl"]
    assert sorted(document_changes(store, "v000012")) == [f"v{n:06d}.txt" for n in range(1, 13)]
    assert sorted(version_stages(store)["v000005"]) == ["manifest.json", "snapshot.json"]
    assert listings == []


def test_a_bucket_written_before_the_index_gets_one_from_a_single_listing(store):
    for number in (1, 2):  # written around the store, as a bucket from before the index was
        store.client.put_object(Bucket=store.bucket, Key=layout.version_key(f"v{number:06d}", "manifest.json"), Body=b"{}")
    listings = count_listings(store)
    assert version_records(store, ["manifest.json"]) == {"v000001": ["manifest.json"], "v000002": ["manifest.json"]}
    store.put_json(layout.version_key("v000003", "manifest.json"), {})
    assert sorted(version_records(store, ["manifest.json"])) == ["v000001", "v000002", "v000003"]
    assert listings == [layout.VERSIONS_PREFIX]


def test_a_deleted_record_leaves_the_index(store):
    store.put_json(layout.version_key("v000001", "manifest.json"), {})
    store.put_json(layout.failure_key("v000001"), {"steps": []})
    store.put_json(layout.failure_key("v000002"), {"steps": []})
    assert version_records(store, [layout.FAILURE]) == {"v000001": [layout.FAILURE], "v000002": [layout.FAILURE]}
    store.delete(layout.failure_key("v000001"))
    store.delete(layout.failure_key("v000002"))
    assert version_records(store, [layout.FAILURE]) == {}
    assert version_records(store, ["manifest.json", layout.FAILURE]) == {"v000001": ["manifest.json"]}


def test_concurrent_writers_lose_no_entry(store):
    store.put_json(layout.version_key("v000000", "manifest.json"), {})  # the index exists: every writer then races on it

    def write(first: int) -> None:
        for number in range(first, first + 6):
            store.put_json(layout.version_key(f"v{number:06d}", "manifest.json"), {})

    writers = [threading.Thread(target=write, args=(first,)) for first in (1, 101, 201, 301)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    expected = {"v000000"} | {f"v{first + n:06d}" for first in (1, 101, 201, 301) for n in range(6)}
    assert set(version_records(store, ["manifest.json"])) == expected
