"""What the bucket's records say across versions: which versions have which records, each document's history from
the manifests, which earlier rows are still live, and which versions a registered model learned."""

import hashlib
import json
import re

from memo_pipelines.qa import normalise
from memo_pipelines.storage import layout, version_index
from memo_pipelines.storage.layout import LANDING_PREFIX, doc_id_for, version_key
from memo_pipelines.storage.objectstore import ObjectStore
from memo_pipelines.storage.registry import ModelRegistry


def rows_digest(rows: list[dict]) -> str:
    """The sha256 of rows in a canonical JSONL form: what a checks record names as the rows it judged."""
    return hashlib.sha256("".join(json.dumps(row, sort_keys=True) + "\n" for row in rows).encode()).hexdigest()


def blocked_reflections(store: ObjectStore, version: str, records: list[str], rows: list[dict] | None = None) -> str | None:
    """Why the version's reflections (`rows`, read when not given) may not be replayed, retained or probed: a failed
    blocking check, or rows that are not the ones checked. None when they stand; rows written without a checks record
    (as the benchmarks write them, straight to the bucket) stand."""
    if layout.REFLECTION_CHECKS not in records:
        return None
    record = store.get_json(layout.reflection_checks_key(version))
    if rows is None:
        rows = load_reflections(store, version) if "reflections.jsonl" in records else []
    if record["reflections_sha256"] != rows_digest(rows):
        return "not the reflections their checks judged"
    return f"failed blocking checks: {', '.join(record['failed'])}" if not record["passed"] else None


def version_records(store: ObjectStore, names) -> dict[str, list[str]]:
    """{version: the records among `names` it has}, counting only versions/{version}/{name} itself: a document archived
    under versions/{version}/raw/ that happens to share a record's name is not that record. Read from the versions
    index (one object), never from a listing of the bucket."""
    records: dict[str, list[str]] = {}
    for version, present in version_index.read(store).items():
        if found := [name for name in present if name in names]:
            records[version] = found
    return records


def load_reflections(store: ObjectStore, version: str) -> list[dict]:
    return store.get_jsonl(version_key(version, "reflections.jsonl"))


def document_changes(store: ObjectStore, up_to: str, landing_prefix: str = LANDING_PREFIX) -> dict[str, list[tuple[str, str]]]:
    """{doc_id: [(version, "landed" | "deleted"), ...]} from the manifests of every version up to and including up_to.
    A re-upload under the same key with the text the document already had (its snapshot's unchanged.json) is no change:
    the rows learned from that text stay live, and nothing is rewritten."""
    changes: dict[str, list[tuple[str, str]]] = {}
    records = version_records(store, ["manifest.json", layout.UNCHANGED])
    for version in sorted(v for v in records if v <= up_to and "manifest.json" in records[v]):
        manifest = store.get_json(version_key(version, "manifest.json"))
        unchanged = store.get_json(version_key(version, layout.UNCHANGED)) if layout.UNCHANGED in records[version] else {}
        for entry in manifest["objects"]:
            if (doc := doc_id_for(entry["key"], landing_prefix)) not in unchanged:
                changes.setdefault(doc, []).append((version, "landed"))
        for key in manifest.get("deleted", []):
            changes.setdefault(doc_id_for(key, landing_prefix), []).append((version, "deleted"))
    return changes


def live_records(store: ObjectStore, version: str, name: str = "reflections.jsonl", include_self: bool = False,
                 landing_prefix: str = LANDING_PREFIX) -> tuple[dict[str, list[dict]], dict[str, int]]:
    """Earlier versions' rows of record `name` (reflections, probes) whose documents still stand as of `version`, and
    how many were retired and why; with include_self, this version's own rows too (all live at their own version).

    A row of version u is retired when one of its source documents was deleted, or rewritten (a newer ETag, whose rows
    replace it), in a version after u and up to `version`. Decided from the manifests alone, so a backfill of an old
    version sees the corpus as it was then. Every row of a version whose reflections failed a blocking check (or are
    not the rows that were checked) is left out too, counted as "failed_checks"; so is a fabricated "I don't know"
    row whose invented name a document of a later version (up to `version`) names, counted as "stale_negatives".
    """
    changes = document_changes(store, version, landing_prefix)
    live, retired = {}, {"deleted": 0, "rewritten": 0, "failed_checks": 0, "stale_negatives": 0}
    records = version_records(store, [name, "reflections.jsonl", layout.REFLECTION_CHECKS, "snapshot.json"])
    versions = sorted(v for v in records if name in records[v] and (v < version or include_self and v == version))
    named = LaterNames(store, sorted(v for v in records if "snapshot.json" in records[v] and v <= version))
    for earlier in versions:
        rows = store.get_jsonl(version_key(earlier, name))
        if blocked_reflections(store, earlier, records[earlier], rows if name == "reflections.jsonl" else None):
            retired["failed_checks"] += len(rows)
            continue
        kept = []
        for row in rows:
            later = [kind for doc in row["source_doc_ids"] for v, kind in changes.get(doc, []) if earlier < v <= version]
            if "deleted" in later:
                retired["deleted"] += 1
            elif later:
                retired["rewritten"] += 1
            elif row.get("method") == FABRICATED and named.after(earlier, invented_entities(row)):
                retired["stale_negatives"] += 1
            else:
                kept.append(row)
        live[earlier] = kept
    return live, retired


FABRICATED = "fabricated_entity"  # an "I don't know" row about a name no document of its version had (reflections/negatives.py)


def invented_entities(row: dict) -> list[str]:
    """The name a fabricated row invented: its `entity`; for rows written before they kept it, the capitalised names of
    its question after the opening word."""
    if row.get("entity"):
        return [row["entity"]]
    return re.findall(r"(?<=\s)[A-Z][\w'-]*(?:\s+[A-Z][\w'-]*)*", row["question"])


class LaterNames:
    """Whether a document of a version after a given one (up to the newest of `versions`) names an entity: the snapshots
    are read once, when a fabricated row is first asked about, so a history without such rows reads none."""

    def __init__(self, store: ObjectStore, versions: list[str]):
        self.store, self.versions, self.texts = store, versions, None

    def after(self, earlier: str, entities: list[str]) -> bool:
        if self.texts is None:
            self.texts = {v: f" {normalise(' '.join(d['text'] for d in self.store.get_json(version_key(v, 'snapshot.json'))['documents']))} "
                          for v in self.versions}
        names = [f" {normalise(e)} " for e in entities if normalise(e)]
        return any(name in text for v, text in self.texts.items() if v > earlier for name in names)


def live_earlier_reflections(store: ObjectStore, version: str, landing_prefix: str = LANDING_PREFIX) -> tuple[dict[str, list[dict]], dict[str, int]]:
    return live_records(store, version, "reflections.jsonl", landing_prefix=landing_prefix)


def live_reflections(store: ObjectStore, version: str, landing_prefix: str = LANDING_PREFIX) -> tuple[dict[str, list[dict]], dict[str, int]]:
    """Every version's live reflections as of `version`, this version's own included."""
    return live_records(store, version, "reflections.jsonl", include_self=True, landing_prefix=landing_prefix)


def learned_versions(registry: ModelRegistry, model_id: str | None) -> list[str]:
    """The versions whose reflections a registered model learned in full (not only as replay); the base model learned none."""
    record = registry.get(model_id) if model_id else None
    if not record or record.get("version") is None:
        return []
    return record["update"]["learned_versions"]


def pending_versions(registry: ModelRegistry, version: str, model_id: str | None) -> list[str]:
    """Earlier versions with reflections that stand (checks passed) but that model_id never learned: their version
    was rejected by its gates, or is not promoted yet. The next update trains on them in full, so nothing is stranded."""
    learned = set(learned_versions(registry, model_id))
    records = version_records(registry.store, ["reflections.jsonl", layout.REFLECTION_CHECKS])
    return [v for v in sorted(records) if v < version and "reflections.jsonl" in records[v] and v not in learned
            and blocked_reflections(registry.store, v, records[v]) is None]


def stranded_documents(store: ObjectStore) -> list[dict]:
    """Manifest entries of versions whose run failed for good before their reflections existed (a failure record and no
    reflections), that no later manifest lists: the next version carries them, as the next update carries a pending
    version's reflections, so a failed version strands no document. Each entry names the version it is carried from."""
    records = version_records(store, ["manifest.json", "reflections.jsonl", layout.FAILURE])
    failed = [v for v in records if layout.FAILURE in records[v] and "reflections.jsonl" not in records[v]]
    if not failed:
        return []
    stranded, listed_later = [], set()
    for version in sorted((v for v in records if v >= min(failed) and "manifest.json" in records[v]), reverse=True):
        manifest = store.get_json(version_key(version, "manifest.json"))
        if version in failed:
            stranded += [{**entry, "carried_from": version} for entry in manifest["objects"] if entry["key"] not in listed_later]
        listed_later |= {entry["key"] for entry in manifest["objects"]} | set(manifest.get("deleted", []))
    return sorted(stranded, key=lambda entry: entry["key"])
