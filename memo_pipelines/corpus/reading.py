"""Stage 1: a version's manifest becomes its snapshot (normalised documents and the quarantine list), its documents read
from the object store as the manifest listed them."""

import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable

from memo_pipelines.corpus.snapshot import Snapshot, build_snapshot, refused_unread, vanished
from memo_pipelines.storage import layout
from memo_pipelines.storage.history import blocked_reflections, document_changes, version_records
from memo_pipelines.storage.layout import doc_id_for, version_key
from memo_pipelines.storage.objectstore import ObjectStore
from memo_pipelines.storage.workspace import Workspace


class Prefetch:
    """fetch(key) for keys asked in manifest order, with the next `window` keys already being read by `workers`
    threads: an object store answers many reads at once, and at most `window` documents wait in memory."""

    def __init__(self, keys: list[str], fetch: Callable[[str], tuple[bytes, str]], workers: int, window: int):
        self.fetch, self.window = fetch, max(window, workers)
        self.pending: deque[str] = deque(keys)
        self.futures: dict[str, Future] = {}
        self.lock = threading.Lock()
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="snapshot-read") if workers > 1 else None

    def _fill(self) -> None:
        while self.pending and len(self.futures) < self.window:
            key = self.pending.popleft()
            self.futures.setdefault(key, self.pool.submit(self.fetch, key))

    def __call__(self, key: str) -> tuple[bytes, str]:
        if self.pool is None:
            return self.fetch(key)
        with self.lock:
            if key not in self.futures:  # asked out of order: skip the keys before it, read by nobody now
                while self.pending and self.pending[0] != key:
                    self.pending.popleft()
            self._fill()
            future = self.futures.pop(key)
            self._fill()
        return future.result()

    def close(self) -> None:
        if self.pool is not None:
            for future in self.futures.values():
                future.cancel()
            self.pool.shutdown(wait=True)


def snapshot_corpus(ws: Workspace, version: str, max_bytes: int, read_workers: int = 8) -> Snapshot:
    manifest = ws.store.get_json(version_key(version, "manifest.json"))
    if manifest is None:
        raise FileNotFoundError(f"version {version} has no manifest at {version_key(version, 'manifest.json')}")
    listed = {entry["key"]: entry.get("etag") for entry in manifest["objects"]}

    def fetch_as_listed(key: str) -> tuple[bytes, str]:
        """The object as the manifest listed it: from the landing folder while its ETag matches, else from the copy
        this version archived when it first read it, so a backfill rebuilds the version from what it really held."""
        archived = layout.archived_document_key(version, doc_id_for(key, ws.landing_prefix))
        try:
            data, etag = ws.store.get_object(key)
        except Exception as error:
            if not vanished(error):
                raise
        else:
            if not listed.get(key) or etag == listed[key]:
                ws.store.put_bytes(archived, data)
                return data, etag
        data, _ = ws.store.get_object(archived)  # NoSuchKey here: deleted or rewritten before this version ever read it
        return data, listed[key]

    # read ahead only what build_snapshot will read: a document it refuses unread is never downloaded
    readable = [e["key"] for e in manifest["objects"] if refused_unread(e, ws.landing_prefix, max_bytes) is None]
    prefetch = Prefetch(readable, fetch_as_listed, read_workers, window=4 * read_workers)
    try:
        snapshot = build_snapshot(version, manifest["objects"], prefetch, ws.landing_prefix, max_bytes)
    finally:
        prefetch.close()
    snapshot.deleted = [doc_id_for(key, ws.landing_prefix) for key in manifest.get("deleted", [])]
    set_aside_learned_copies(ws, version, snapshot)
    ws.store.put_json(version_key(version, "snapshot.json"), snapshot.to_json())
    ws.store.put_json(version_key(version, layout.SNAPSHOT_SUMMARY), summary(snapshot))
    return snapshot


def summary(snapshot: Snapshot) -> dict:
    return {"documents": {doc.doc_id: doc.sha256 for doc in snapshot.documents}, "nothing_to_learn": snapshot.nothing_to_learn,
            "quarantine": snapshot.quarantine, "superseded": snapshot.superseded}


def snapshot_summary(store: ObjectStore, version: str, names=()) -> dict | None:
    """The version's snapshot summary: a few bytes a document where the snapshot holds every text (later readers of
    every earlier version read this, so their cost does not grow with the corpus's text); from the snapshot itself for
    versions written before summaries. `names`: the version's records, when the caller listed them already."""
    if layout.SNAPSHOT_SUMMARY in names or not names:
        found = store.get_json(version_key(version, layout.SNAPSHOT_SUMMARY))
        if found is not None:
            return found
    snapshot = store.get_json(version_key(version, "snapshot.json"))
    return summary(Snapshot.from_json(snapshot)) if snapshot else None


def set_aside_learned_copies(ws: Workspace, version: str, snapshot: Snapshot) -> None:
    """Move to the snapshot's duplicates every document whose text is that of a document an earlier version holds, under
    another key, still live (neither deleted nor rewritten since) and with reflections that stand: its facts are learned
    or pending already, and learning them again only makes the update longer."""
    if not snapshot.documents:
        return
    records = version_records(ws.store, ["snapshot.json", layout.SNAPSHOT_SUMMARY, "reflections.jsonl", layout.REFLECTION_CHECKS])
    earlier = [v for v in sorted(records) if v < version and "reflections.jsonl" in records[v]
               and {"snapshot.json", layout.SNAPSHOT_SUMMARY} & set(records[v]) and blocked_reflections(ws.store, v, records[v]) is None]
    if not earlier:
        return
    changes = document_changes(ws.store, version, ws.landing_prefix)
    learned: dict[str, tuple[str, str]] = {}  # text sha256: (doc_id, version)
    standing: dict[str, tuple[str, str]] = {}  # doc_id: (text sha256, version) of its text before this version
    for v in earlier:
        for doc_id, sha256 in snapshot_summary(ws.store, v, records[v])["documents"].items():
            later = [when for when, _ in changes.get(doc_id, []) if v < when <= version]
            if not later:
                learned[sha256] = (doc_id, v)
            if later in ([], [version]):  # it stood until this version re-uploaded its key (or, on a rerun, still stands)
                standing[doc_id] = (sha256, v)
    kept, unchanged = [], {}
    for doc in snapshot.documents:
        original = learned.get(doc.sha256)
        if standing.get(doc.doc_id, ("", ""))[0] == doc.sha256:  # the same text in new bytes (re-saved, line endings)
            snapshot.duplicates.append({"doc_id": doc.doc_id, "duplicate_of": doc.doc_id, "learned_in": standing[doc.doc_id][1]})
            unchanged[doc.doc_id] = standing[doc.doc_id][1]
        elif original and original[0] != doc.doc_id:
            snapshot.duplicates.append({"doc_id": doc.doc_id, "duplicate_of": original[0], "learned_in": original[1]})
        else:
            kept.append(doc)
    snapshot.documents = kept
    if unchanged:  # before the snapshot: the history reads it, so the rows of that text stay live (storage/history.py)
        ws.store.put_json(version_key(version, layout.UNCHANGED), unchanged)


def load_snapshot(store: ObjectStore, version: str) -> Snapshot:
    return Snapshot.from_json(store.get_json(version_key(version, "snapshot.json")))
