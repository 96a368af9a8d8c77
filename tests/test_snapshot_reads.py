"""The snapshot reads documents in parallel and the result is the one a single reader gets: every document, the
quarantine with its reasons, the archive copies; a document deleted before it was read is still quarantined as such,
and a document refused unread (too big) is never read ahead."""

from memo_pipelines.corpus.landing import Cursor, diff_landing, manifest
from memo_pipelines.storage.workspace import Workspace
from memo_pipelines.corpus.reading import snapshot_corpus
from memo_pipelines.storage import layout
from memo_pipelines.storage.registry import ModelRegistry


def landed_version(store, tmp_path, documents: dict[str, bytes]) -> Workspace:
    for key, body in documents.items():
        store.put_bytes(layout.LANDING_PREFIX + key, body)
    diff = diff_landing(list(store.list_objects(layout.LANDING_PREFIX)), Cursor())
    store.put_json(layout.version_key("v000001", "manifest.json"), manifest("v000001", diff))
    return Workspace(store, ModelRegistry(store, tmp_path / "models"), tmp_path / "work")


def summary(snapshot) -> tuple:
    return ([(d.doc_id, d.etag, d.text) for d in sorted(snapshot.documents, key=lambda d: d.doc_id)],
            sorted((q["doc_id"], q["reason"]) for q in snapshot.quarantine), sorted(map(str, snapshot.duplicates)))


def test_parallel_reads_give_the_snapshot_one_reader_gives(store, tmp_path):
    documents = {f"plants/plant-{i:03d}.txt": f"The plant number {i} in Orvale employs {100 + i} people and opened in {1900 + i}.".encode()
                 for i in range(40)}
    documents["plants/copy.txt"] = documents["plants/plant-007.txt"]  # an exact duplicate
    documents["broken.pdf"] = b"%PDF-1.7 not really a pdf"
    documents["big.txt"] = b"x " * 3000
    ws = landed_version(store, tmp_path, documents)
    deleted = layout.LANDING_PREFIX + "plants/plant-013.txt"
    store.delete(deleted)  # listed in the manifest, gone before the snapshot reads it

    one = summary(snapshot_corpus(ws, "v000001", max_bytes=5000, read_workers=1))
    # the first snapshot archived what it read; the parallel one must find the deleted document quarantined again
    for key in [o.key for o in store.list_objects("versions/") if "/raw/" in o.key or o.key.endswith("snapshot.json")]:
        store.delete(key)
    eight = summary(snapshot_corpus(ws, "v000001", max_bytes=5000, read_workers=8))

    assert eight == one
    kept = {doc_id for doc_id, _, _ in one[0]}
    assert len(kept) == 39 and "plants/plant-013.txt" not in kept  # 41 text documents, one deleted, one a duplicate
    assert len(one[2]) == 1 and len({"plants/copy.txt", "plants/plant-007.txt"} & kept) == 1
    reasons = dict(one[1])
    assert reasons["plants/plant-013.txt"] == "deleted or rewritten before this version read it"
    assert "over the 5000-byte limit" in reasons["big.txt"] and "broken.pdf" in reasons
    # every document read is archived for backfills, the refused ones never
    assert store.get_bytes(layout.archived_document_key("v000001", "plants/plant-039.txt")) == documents["plants/plant-039.txt"]
    assert not [o.key for o in store.list_objects("versions/") if o.key.endswith("big.txt")]  # refused unread; a corrupt PDF is read, so archived
