"""What the landing sensor decides, without Dagster: which objects are new since the cursor, and the next version key."""

import json
from dataclasses import dataclass

from .objectstore import StoredObject


@dataclass
class LandingDiff:
    new_or_changed: list[StoredObject]
    deleted: list[str]  # deletions not yet recorded in a version's manifest
    seen: dict[str, str]  # the cursor after this batch: {key: etag}


@dataclass
class Cursor:
    etags: dict[str, str]
    pending_deleted: list[str]  # deletions wait here for the next version that has new documents


def parse_cursor(cursor: str | None) -> Cursor:
    data = json.loads(cursor) if cursor else {}
    return Cursor(data.get("etags", {}), data.get("pending_deleted", []))


def dump_cursor(seen: dict[str, str], pending_deleted: list[str] = ()) -> str:
    return json.dumps({"etags": seen, "pending_deleted": sorted(pending_deleted)}, sort_keys=True, separators=(",", ":"))


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


def manifest(version: str, diff: LandingDiff) -> dict:
    return {
        "version": version,
        "objects": [{"key": o.key, "etag": o.etag, "size": o.size} for o in diff.new_or_changed],
        "deleted": diff.deleted,
    }
