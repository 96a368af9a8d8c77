"""What the landing sensor decides, without Dagster: which objects are new since the cursor, and the next version key."""

import json
from dataclasses import dataclass

from .objectstore import StoredObject


@dataclass
class LandingDiff:
    new_or_changed: list[StoredObject]
    deleted: list[str]
    seen: dict[str, str]  # the cursor after this batch: {key: etag}


def parse_cursor(cursor: str | None) -> dict[str, str]:
    return json.loads(cursor)["etags"] if cursor else {}


def dump_cursor(seen: dict[str, str]) -> str:
    return json.dumps({"etags": seen}, sort_keys=True, separators=(",", ":"))


def diff_landing(listing: list[StoredObject], seen: dict[str, str]) -> LandingDiff:
    """New keys and keys rewritten in place (new ETag) since the cursor; ETag, not LastModified (one-second resolution)."""
    current = {o.key: o.etag for o in listing if not o.key.endswith("/")}
    changed = [o for o in listing if o.key in current and seen.get(o.key) != o.etag]
    deleted = sorted(set(seen) - set(current))
    return LandingDiff(sorted(changed, key=lambda o: o.key), deleted, current)


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
