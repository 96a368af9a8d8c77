"""Corpus snapshots: a version's manifest becomes normalised documents plus a quarantine list."""

import hashlib
import re
import unicodedata
from dataclasses import asdict, dataclass, field
from pathlib import PurePosixPath
from typing import Callable

TEXT_SUFFIXES = {".txt", ".md", ".markdown", ".text", ""}
MAX_DOCUMENT_BYTES = 2_000_000


class Unreadable(ValueError):
    """A document that cannot become text; the message is the quarantine reason."""


@dataclass
class Document:
    doc_id: str
    key: str
    etag: str
    size: int
    sha256: str
    text: str


@dataclass
class Snapshot:
    version: str
    documents: list[Document] = field(default_factory=list)
    quarantine: list[dict] = field(default_factory=list)
    duplicates: list[dict] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "version": self.version,
            "documents": [asdict(doc) for doc in self.documents],
            "quarantine": self.quarantine,
            "duplicates": self.duplicates,
        }

    @classmethod
    def from_json(cls, data: dict) -> "Snapshot":
        return cls(data["version"], [Document(**doc) for doc in data["documents"]], data["quarantine"], data["duplicates"])


def normalise_text(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).replace("\r\n", "\n").replace("\r", "\n")
    text = re.sub(r"[ \t]+", " ", text)
    text = "\n".join(line.strip() for line in text.split("\n")).strip()
    return re.sub(r"\n{3,}", "\n\n", text)  # after stripping, so blank lines holding spaces collapse too


def extract_text(key: str, data: bytes, max_bytes: int = MAX_DOCUMENT_BYTES) -> str:
    """Normalised text of a plain-text document, or Unreadable with the reason."""
    suffix = PurePosixPath(key).suffix.lower()
    if suffix not in TEXT_SUFFIXES:
        raise Unreadable(f"unsupported document type {suffix!r}")
    if len(data) == 0:
        raise Unreadable("empty document")
    if len(data) > max_bytes:
        raise Unreadable(f"document of {len(data)} bytes is over the {max_bytes}-byte limit")
    if b"\x00" in data:
        raise Unreadable("binary content (NUL bytes)")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise Unreadable(f"not valid UTF-8 at byte {error.start}") from None
    control = sum(1 for ch in text if unicodedata.category(ch) == "Cc" and ch not in "\n\r\t")
    if control > 0.01 * len(text):
        raise Unreadable("binary content (control characters)")
    text = normalise_text(text)
    if not text:
        raise Unreadable("no text after normalisation")
    return text


def doc_id_for(key: str, landing_prefix: str) -> str:
    return key[len(landing_prefix):] if key.startswith(landing_prefix) else key


def build_snapshot(
    version: str,
    manifest: list[dict],
    fetch: Callable[[str], tuple[bytes, str]],
    landing_prefix: str,
    max_bytes: int = MAX_DOCUMENT_BYTES,
    near_duplicate_threshold: float = 0.8,
) -> Snapshot:
    """Fetch every manifest entry, keep readable documents, quarantine the rest with a reason, drop exact and near
    duplicates (estimated word-shingle Jaccard similarity >= near_duplicate_threshold; a threshold above 1 turns it off)."""
    from .dedup import MinHashIndex

    snapshot = Snapshot(version)
    seen: dict[str, str] = {}
    near = MinHashIndex(threshold=near_duplicate_threshold)
    for entry in manifest:
        key = entry["key"]
        doc_id = doc_id_for(key, landing_prefix)
        try:
            data, etag = fetch(key)
        except Exception as error:  # a vanished or unreadable object must not stop the version
            snapshot.quarantine.append({"doc_id": doc_id, "key": key, "reason": f"could not fetch: {error}"})
            continue
        try:
            text = extract_text(key, data, max_bytes)
        except Unreadable as reason:
            snapshot.quarantine.append({"doc_id": doc_id, "key": key, "reason": str(reason)})
            continue
        digest = hashlib.sha256(text.encode()).hexdigest()
        if digest in seen:
            snapshot.duplicates.append({"doc_id": doc_id, "duplicate_of": seen[digest]})
            continue
        similar = near.find(text) if near_duplicate_threshold <= 1.0 else None
        if similar:
            snapshot.duplicates.append({"doc_id": doc_id, "duplicate_of": similar[0], "similarity": similar[1]})
            continue
        seen[digest] = doc_id
        near.add(doc_id, text)
        snapshot.documents.append(Document(doc_id, key, etag, len(data), digest, text))
    return snapshot
