"""Corpus snapshots: a version's manifest becomes normalised documents plus a quarantine list."""

import difflib
import hashlib
import re
import unicodedata
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Callable

from memo_pipelines.corpus.formats import Unreadable, document_format, read_document, unsafe_key_reason
from memo_pipelines.corpus.language import language_problem
from memo_pipelines.storage.layout import doc_id_for

MAX_DOCUMENT_BYTES = 2_000_000

__all__ = ["Unreadable", "Document", "Snapshot", "extract_text", "build_snapshot", "refused_unread", "normalise_text", "vanished"]


@dataclass
class Document:
    doc_id: str
    key: str
    etag: str
    size: int
    sha256: str
    text: str
    format: str = "text"


@dataclass
class Snapshot:
    version: str
    documents: list[Document] = field(default_factory=list)
    quarantine: list[dict] = field(default_factory=list)
    duplicates: list[dict] = field(default_factory=list)  # exact copies (same normalised text) of a kept document
    deleted: list[str] = field(default_factory=list)  # doc ids removed from the landing folder in this version
    # near-duplicates of a newer document of this version: {doc_id, key, superseded_by, similarity, reason}
    superseded: list[dict] = field(default_factory=list)

    @property
    def nothing_to_learn(self) -> bool:
        """Deletions, or documents whose text is learned already, and nothing else: the version has no facts of its own."""
        return not (self.documents or self.quarantine) and bool(self.deleted or self.duplicates)

    def to_json(self) -> dict:
        return {
            "version": self.version,
            "documents": [asdict(doc) for doc in self.documents],
            "quarantine": self.quarantine,
            "duplicates": self.duplicates,
            "deleted": self.deleted,
            "superseded": self.superseded,
        }

    @classmethod
    def from_json(cls, data: dict) -> "Snapshot":
        documents = [Document(**doc) for doc in data["documents"]]
        return cls(data["version"], documents, data["quarantine"], data["duplicates"], data.get("deleted", []), data.get("superseded", []))


def normalise_text(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).replace("\r\n", "\n").replace("\r", "\n")
    text = re.sub(r"[ \t]+", " ", text)
    text = "\n".join(line.strip() for line in text.split("\n")).strip()
    return re.sub(r"\n{3,}", "\n\n", text)  # after stripping, so blank lines holding spaces collapse too


def extract_text(key: str, data: bytes, max_bytes: int = MAX_DOCUMENT_BYTES) -> str:
    """Normalised text of a text, Markdown, HTML, JSON, JSONL or PDF document, or Unreadable with the reason."""
    document_format(key)
    if len(data) == 0:
        raise Unreadable("empty document")
    if len(data) > max_bytes:
        raise Unreadable(f"document of {len(data)} bytes is over the {max_bytes}-byte limit")
    text = normalise_text(read_document(key, data))
    if not text:
        raise Unreadable("no text after normalisation")
    return text


def vanished(error: Exception) -> bool:
    """True for an object that no longer exists (S3 NoSuchKey or 404, or a missing local file)."""
    code = getattr(error, "response", {}).get("Error", {}).get("Code")
    return code in ("NoSuchKey", "404") or isinstance(error, (FileNotFoundError, KeyError))


def modified_at(entry: dict) -> float:
    """The manifest entry's last-modified time in seconds (the listing's), or -inf for an entry written without one."""
    value = entry.get("last_modified")
    return datetime.fromisoformat(value).timestamp() if value else float("-inf")


def text_changes(older: str, newer: str, limit: int = 3, width: int = 6) -> str:
    """The first few word-level edits that turn the older text into the newer one: "'340' -> '345'; ..."."""
    old_words, new_words = older.split(), newer.split()
    edits = [(" ".join(old_words[i1:i2][:width]), " ".join(new_words[j1:j2][:width]))
             for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, old_words, new_words, autojunk=False).get_opcodes() if tag != "equal"]
    shown = "; ".join(f"'{a}' -> '{b}'" for a, b in edits[:limit])
    return shown + (f"; and {len(edits) - limit} more" if len(edits) > limit else "")


def keep_newest(candidates: list[tuple[dict, Document]], threshold: float) -> tuple[list[Document], list[dict]]:
    """Of every group of near-duplicates keep the newest document (latest last-modified time; on a tie, or without
    times, the later key in sort order) and record each older one as superseded by it, with what the newer one changed."""
    from memo_pipelines.corpus.dedup import MinHashIndex

    near = MinHashIndex(threshold=threshold)
    kept: dict[str, tuple[dict, Document]] = {}
    superseded: dict[str, dict] = {}
    for entry, doc in sorted(candidates, key=lambda c: (modified_at(c[0]), c[1].doc_id), reverse=True):
        similar = near.find(doc.text) if threshold <= 1.0 else None
        if similar is None:
            near.add(doc.doc_id, doc.text)
            kept[doc.doc_id] = (entry, doc)
            continue
        newer_entry, newer = kept[similar[0]]
        when = (f"older: last modified {entry.get('last_modified') or 'unknown'}, the kept one {newer_entry['last_modified']}"
                if modified_at(newer_entry) > modified_at(entry) else "no older by last-modified time (same second, or none recorded): kept the later key in sort order")
        superseded[doc.doc_id] = {"doc_id": doc.doc_id, "key": doc.key, "superseded_by": newer.doc_id, "similarity": similar[1],
                                  "reason": f"{when}; the kept one changed {text_changes(doc.text, newer.text) or 'only spacing'}"}
    order = [doc.doc_id for _, doc in candidates]  # both lists in manifest order
    return [doc for _, doc in candidates if doc.doc_id in kept], sorted(superseded.values(), key=lambda s: order.index(s["doc_id"]))


def refused_unread(entry: dict, landing_prefix: str, max_bytes: int) -> str | None:
    """Why a manifest entry is quarantined without being downloaded (an unsafe key, over the size limit, a format no
    reader takes), or None for one that is read."""
    refused = unsafe_key_reason(doc_id_for(entry["key"], landing_prefix))
    if refused is None and int(entry.get("size") or 0) > max_bytes:
        refused = f"document of {entry['size']} bytes is over the {max_bytes}-byte limit"
    if refused is None:
        try:
            document_format(entry["key"])
        except Unreadable as reason:
            refused = str(reason)
    return refused


def build_snapshot(
    version: str,
    manifest: list[dict],
    fetch: Callable[[str], tuple[bytes, str]],
    landing_prefix: str,
    max_bytes: int = MAX_DOCUMENT_BYTES,
    near_duplicate_threshold: float = 0.8,
    english_only: bool = True,
) -> Snapshot:
    """Fetch every manifest entry, keep readable documents, quarantine the rest with a reason, drop exact duplicates
    (counted), and of near-duplicates (estimated word-shingle Jaccard similarity >= near_duplicate_threshold; a
    threshold above 1 turns it off) keep the newest, recording the others as superseded with what changed. With
    english_only, a document in another language is quarantined with the language found (corpus/language.py)."""
    snapshot = Snapshot(version)
    seen: dict[str, str] = {}
    candidates: list[tuple[dict, Document]] = []
    for entry in manifest:
        key = entry["key"]
        doc_id = doc_id_for(key, landing_prefix)
        refused = refused_unread(entry, landing_prefix, max_bytes)
        if refused:
            snapshot.quarantine.append({"doc_id": doc_id, "key": key, "reason": refused})
            continue
        try:
            data, etag = fetch(key)
        except Exception as error:
            if not vanished(error):
                raise  # a store fault (after the client's retries) fails the step, to be re-executed; it is no reason to drop the document
            snapshot.quarantine.append({"doc_id": doc_id, "key": key, "reason": "deleted or rewritten before this version read it"})
            continue
        try:
            text = extract_text(key, data, max_bytes)
        except Unreadable as reason:
            snapshot.quarantine.append({"doc_id": doc_id, "key": key, "reason": str(reason)})
            continue
        foreign = language_problem(text) if english_only else None
        if foreign:
            snapshot.quarantine.append({"doc_id": doc_id, "key": key, "reason": foreign})
            continue
        digest = hashlib.sha256(text.encode()).hexdigest()
        if digest in seen:
            snapshot.duplicates.append({"doc_id": doc_id, "duplicate_of": seen[digest]})
            continue
        seen[digest] = doc_id
        candidates.append((entry, Document(doc_id, key, etag, len(data), digest, text, document_format(key))))
    snapshot.documents, snapshot.superseded = keep_newest(candidates, near_duplicate_threshold)
    return snapshot
