"""Stage 1: a version's manifest becomes its snapshot (normalised documents and the quarantine list)."""

from memo_pipelines.corpus.snapshot import Snapshot, build_snapshot, doc_id_for, vanished
from memo_pipelines.pipeline.workspace import Workspace
from memo_pipelines.storage import layout
from memo_pipelines.storage.layout import version_key


def snapshot_corpus(ws: Workspace, version: str, max_bytes: int) -> Snapshot:
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

    snapshot = build_snapshot(version, manifest["objects"], fetch_as_listed, ws.landing_prefix, max_bytes)
    snapshot.deleted = [doc_id_for(key, ws.landing_prefix) for key in manifest.get("deleted", [])]
    ws.store.put_json(version_key(version, "snapshot.json"), snapshot.to_json())
    return snapshot


def load_snapshot(ws: Workspace, version: str) -> Snapshot:
    return Snapshot.from_json(ws.store.get_json(version_key(version, "snapshot.json")))
