"""What the landing sensor decides, without Dagster: which objects are new since the cursor, and the next version key.

Exactly once: every (key, ETag) that lands goes into one version's manifest (and into the next one too when its
version failed for good before writing reflections: storage/history.py stranded_documents). The sensor's state ({key: ETag} seen,
deletions not yet recorded) is kept in the bucket under a content-addressed key, so the Dagster cursor stays a few
bytes however large the bucket; a tick that dies before its cursor is committed leaves the previous state intact.
A tick whose partitions were added but whose cursor was lost (a daemon crash between the two) is recovered by
folding those versions' manifests back into the state, so their documents are not assigned a second time.
"""

import gzip
import hashlib
import json
from dataclasses import dataclass, field

from memo_pipelines.storage.layout import SENSOR_STATE_PREFIX, sensor_state_key
from memo_pipelines.storage.objectstore import ObjectStore, StoredObject


@dataclass
class LandingDiff:
    new_or_changed: list[StoredObject]
    deleted: list[str]  # deletions not yet recorded in a version's manifest
    seen: dict[str, str]  # the state after this batch: {key: etag}


@dataclass
class Cursor:
    etags: dict[str, str] = field(default_factory=dict)
    # deletions not yet in a manifest: a state written when a deletion alone waited for new documents still carries some
    pending_deleted: list[str] = field(default_factory=list)
    last_version: str = ""  # the newest version this state already accounts for


def load_cursor(store: ObjectStore, cursor: str | None) -> Cursor:
    data = json.loads(cursor) if cursor else {}
    last_version = data.get("last_version", "")
    if "state" in data:
        data = json.loads(gzip.decompress(store.get_bytes(data["state"])))
    return Cursor(data.get("etags", {}), data.get("pending_deleted", []), last_version)


def save_cursor(store: ObjectStore, seen: dict[str, str], pending_deleted: list[str], last_version: str, previous: str | None) -> str:
    """Write the state object (content-addressed, so rewriting it is harmless) and return the small Dagster cursor."""
    body = json.dumps({"etags": seen, "pending_deleted": sorted(pending_deleted)}, sort_keys=True, separators=(",", ":")).encode()
    key = sensor_state_key(hashlib.sha256(body).hexdigest()[:20])
    store.put_bytes(key, gzip.compress(body, mtime=0))
    # states of failed or superseded ticks; the one the incoming cursor names stays until a later tick commits
    keep = {key, json.loads(previous).get("state") if previous else None}
    for obj in list(store.list_objects(SENSOR_STATE_PREFIX)):
        if obj.key not in keep:
            store.delete(obj.key)
    return json.dumps({"state": key, "last_version": last_version, "objects": len(seen), "pending_deleted": len(pending_deleted)},
                      sort_keys=True, separators=(",", ":"))


def fold_uncommitted(cursor: Cursor, manifests: dict[str, dict]) -> Cursor:
    """Account for versions created after the cursor's last version (their tick's cursor was never committed)."""
    etags, pending = dict(cursor.etags), set(cursor.pending_deleted)
    for version in sorted(manifests):
        for obj in manifests[version]["objects"]:
            etags[obj["key"]] = obj["etag"]
        for key in manifests[version].get("deleted", []):
            etags.pop(key, None)
            pending.discard(key)
    last = max(manifests, default=cursor.last_version)
    return Cursor(etags, sorted(pending), max(last, cursor.last_version))


def diff_landing(listing: list[StoredObject], cursor: Cursor) -> LandingDiff:
    """New keys and keys rewritten in place (new ETag) since the cursor; ETag, not LastModified (one-second resolution)."""
    current = {o.key: o.etag for o in listing if not o.key.endswith("/")}
    changed = [o for o in listing if o.key in current and cursor.etags.get(o.key) != o.etag]
    deleted = set(cursor.pending_deleted) | (set(cursor.etags) - set(current))
    return LandingDiff(sorted(changed, key=lambda o: o.key), sorted(deleted - set(current)), current)


def next_version_key(existing: list[str]) -> str:
    """Short, sortable, comma-free: v000001, v000002, ..."""
    numbers = [int(k[1:]) for k in existing if k.startswith("v") and k[1:].isdigit()]
    return f"v{max(numbers, default=0) + 1:06d}"


def manifest(version: str, diff: LandingDiff, stranded: list[dict] = ()) -> dict:
    """The version's manifest: the new or changed objects, the deletions, and the `stranded` entries of failed versions
    (storage/history.py) whose object still stands in the landing folder as that version listed it."""
    new = {o.key for o in diff.new_or_changed}
    carried = [entry for entry in stranded if entry["key"] not in new and diff.seen.get(entry["key"]) == entry["etag"]]
    return {
        "version": version,
        # last_modified tells which of two near-duplicate documents is the newer one (the snapshot keeps that one)
        "objects": [{"key": o.key, "etag": o.etag, "size": o.size, "last_modified": o.last_modified} for o in diff.new_or_changed] + carried,
        "deleted": diff.deleted,
    }
