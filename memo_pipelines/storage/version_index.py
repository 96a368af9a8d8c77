"""The versions index: which records each corpus version has, in one small object, so that a run reads one object
instead of listing every object of every version (raw documents, adapters and checkpoints included).

The store keeps it: every write or delete of a record (versions/{v}/{name}) through ObjectStore updates the index
with a compare-and-set, so concurrent runs of different versions never lose each other's entries. A bucket written
before the index gets it built once from a listing. The record is written before its index entry: a crash between the
two leaves a record the index does not show yet, which the step's retry writes again; never an entry without its
record."""

import json
import random
import time

from memo_pipelines.storage import layout

CONFLICT_ATTEMPTS = 32


def listed(store) -> dict[str, list[str]]:
    """{version: sorted record names} from a listing of the versions prefix: what the index says, the slow way."""
    records: dict[str, set[str]] = {}
    for obj in store.list_objects(layout.VERSIONS_PREFIX):
        if found := layout.version_of_record(obj.key):
            records.setdefault(found[0], set()).add(found[1])
    return {version: sorted(names) for version, names in sorted(records.items())}


def _body(records: dict[str, list[str]]) -> bytes:
    return json.dumps({"records": records}, sort_keys=True, separators=(",", ":")).encode()


def read(store) -> dict[str, list[str]]:
    """{version: record names}. A bucket without an index gets one, built from a listing; a store that may not write
    (a read-only credential) still gets the listing's answer."""
    from memo_pipelines.storage.objectstore import StoreError, WriteConflict

    index, _ = store.get_json_versioned(layout.VERSION_INDEX)
    if index is not None:
        return index["records"]
    records = listed(store)
    try:
        store.put_bytes_if(layout.VERSION_INDEX, _body(records), None)
    except WriteConflict:
        return read(store)  # another process built it first, perhaps with a record written since our listing
    except StoreError as error:
        if error.code not in ("AccessDenied", "403"):
            raise
    return records


def note(store, version: str, name: str, present: bool) -> None:
    """Record that versions/{version}/{name} now exists (present) or is gone. A no-op when the index already says so."""
    from memo_pipelines.storage.objectstore import WriteConflict

    for attempt in range(CONFLICT_ATTEMPTS):
        index, etag = store.get_json_versioned(layout.VERSION_INDEX)
        if index is None:
            records = listed(store)  # the listing already shows this write or delete
        else:
            records = index["records"]
            names = set(records.get(version, []))
            if (name in names) == present:
                return
            names = names | {name} if present else names - {name}
            if names:
                records[version] = sorted(names)
            else:
                records.pop(version, None)
        try:
            store.put_bytes_if(layout.VERSION_INDEX, _body(records), etag)
            return
        except WriteConflict:
            time.sleep(random.uniform(0, 0.05 * (attempt + 1)))  # jitter, so two writers do not collide again in step
    raise WriteConflict(f"the versions index kept changing under {CONFLICT_ATTEMPTS} attempts to record {version}/{name}")
