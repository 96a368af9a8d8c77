"""The landing sensor on a real S3 server and a real Dagster instance: one version per batch of new documents."""

from concurrent.futures import ThreadPoolExecutor

import dagster as dg

from assets.partitions import corpus_versions


def versions(instance) -> list[str]:
    return instance.get_dynamic_partitions(corpus_versions.name)


def manifest_etags(store, version: str) -> dict[str, str]:
    return {o["key"]: o["etag"] for o in store.get_json(f"versions/{version}/manifest.json")["objects"]}


def requested(tick) -> list[tuple[str, str]]:
    return [] if isinstance(tick, dg.SkipReason) else [(r.run_key, r.partition_key) for r in tick.run_requests]


def test_new_documents_make_one_version_and_an_unchanged_bucket_makes_none(store, landing):
    tick, instance = landing
    etags = {key: store.put_bytes(key, text.encode()) for key, text in {
        "landing/a.txt": "Alpha.", "landing/notes/b.md": "Beta.", "landing/c.txt": "Gamma."}.items()}

    first = tick(None)
    assert requested(first) == [("v000001", "v000001")]
    assert versions(instance) == ["v000001"]
    assert manifest_etags(store, "v000001") == etags
    assert store.get_json("versions/v000001/manifest.json")["deleted"] == []

    second = tick(first.cursor)
    assert requested(second) == []
    assert versions(instance) == ["v000001"]
    assert not store.exists("versions/v000002/manifest.json")


def test_rewrite_in_place_makes_a_version_with_only_that_key(store, landing):
    tick, instance = landing
    store.put_bytes("landing/a.txt", b"first draft")
    store.put_bytes("landing/b.txt", b"unchanged")
    first = tick(None)

    new_etag = store.put_bytes("landing/a.txt", b"second draft")
    second = tick(first.cursor)
    assert requested(second) == [("v000002", "v000002")]
    assert versions(instance) == ["v000001", "v000002"]
    assert manifest_etags(store, "v000002") == {"landing/a.txt": new_etag}


def test_listing_across_pages_lands_in_one_version(store, landing):
    tick, _ = landing
    keys = [f"landing/bulk/{i:05d}.txt" for i in range(1100)]
    with ThreadPoolExecutor(8) as pool:
        etags = dict(zip(keys, pool.map(lambda key: store.put_bytes(key, key.encode()), keys)))
    # the server really pages this listing, so the sensor must follow continuation tokens
    page = store.client.list_objects_v2(Bucket=store.bucket, Prefix="landing/")
    assert page["IsTruncated"] and page["KeyCount"] < len(keys)

    first = tick(None)
    assert requested(first) == [("v000001", "v000001")]
    assert manifest_etags(store, "v000001") == etags


def test_outside_prefix_is_ignored_and_deletions_are_recorded(store, landing):
    tick, instance = landing
    store.put_bytes("landing/keep.txt", b"kept")
    store.put_bytes("landing/gone.txt", b"to be deleted")
    for key in ["archive/landing/old.txt", "landing-old/x.txt", "readme.txt"]:
        store.put_bytes(key, b"not a landed document")
    first = tick(None)
    assert set(manifest_etags(store, "v000001")) == {"landing/keep.txt", "landing/gone.txt"}

    store.put_bytes("other/new.txt", b"still outside")
    assert requested(tick(first.cursor)) == []

    store.delete("landing/gone.txt")
    new_etag = store.put_bytes("landing/new.txt", b"arrived")
    second = tick(first.cursor)
    assert requested(second) == [("v000002", "v000002")]
    manifest = store.get_json("versions/v000002/manifest.json")
    assert manifest["deleted"] == ["landing/gone.txt"]
    assert manifest_etags(store, "v000002") == {"landing/new.txt": new_etag}
    assert versions(instance) == ["v000001", "v000002"]


def test_a_deletion_alone_makes_a_version_of_its_own(store, landing):
    # a takedown must not wait for someone to upload something: the deletion's version is what unlearns the document
    tick, instance = landing
    store.put_bytes("landing/a.txt", b"first")
    store.put_bytes("landing/b.txt", b"second")
    first = tick(None)
    store.delete("landing/b.txt")
    deletion = tick(first.cursor)
    assert requested(deletion) == [("v000002", "v000002")] and versions(instance) == ["v000001", "v000002"]
    assert store.get_json("versions/v000002/manifest.json") | {"version": None} == {"version": None, "objects": [], "deleted": ["landing/b.txt"]}
    # recorded once: an unchanged bucket makes no further version, and the next upload's manifest does not repeat it
    quiet = tick(deletion.cursor)
    assert requested(quiet) == [] and versions(instance) == ["v000001", "v000002"]
    store.put_bytes("landing/c.txt", b"third")
    tick(deletion.cursor)
    assert store.get_json("versions/v000003/manifest.json")["deleted"] == []


def test_a_deletion_an_older_state_left_waiting_is_recorded_by_the_next_tick(store, landing):
    # a sensor state written while deletions waited for new documents: the first tick after the upgrade records them
    from memo_pipelines.corpus.landing import save_cursor

    tick, instance = landing
    etag = store.put_bytes("landing/a.txt", b"first")
    store.put_bytes("versions/v000001/manifest.json", b"{}")  # the version that learned a.txt and b.txt
    instance.add_dynamic_partitions("corpus_versions", ["v000001"])
    waiting = save_cursor(store, {"landing/a.txt": etag}, ["landing/b.txt"], "v000001", None)
    tick_result = tick(waiting)
    assert requested(tick_result) == [("v000002", "v000002")]
    assert store.get_json("versions/v000002/manifest.json")["deleted"] == ["landing/b.txt"]
