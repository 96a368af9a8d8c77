"""Passages of the live corpus for the reader and the hybrid route: documents cut into chunks with their character
spans, ranked by BM25 (rank_bm25), and the reader's prompt that answers from them.

A chunk remembers its document id and where it lies in the document's normalised text, so an answer can quote the
passage that supports it ("doc.md", characters 120-410)."""

from dataclasses import dataclass

from memo_pipelines.qa import normalise

READER_PROMPT = """Answer the question using the passages. Reply with only the short answer (a name, a date, a number).
Passages:
{passages}
Question: {question}"""


@dataclass(frozen=True)
class Passage:
    doc_id: str
    start: int
    end: int
    text: str


def chunk_document(doc_id: str, text: str, max_chars: int = 800) -> list[Passage]:
    """Consecutive pieces of at most about `max_chars`, cut at paragraph or sentence ends, with their spans in `text`."""
    passages, start = [], 0
    while start < len(text):
        end = min(len(text), start + max_chars)
        if end < len(text):
            cut = max(text.rfind("\n\n", start, end), text.rfind(". ", start, end))
            end = cut + 1 if cut > start + max_chars // 3 else end
        piece = text[start:end].strip()
        if piece:
            offset = text.index(piece, start)
            passages.append(Passage(doc_id, offset, offset + len(piece), piece))
        start = end
    return passages


class PassageIndex:
    """BM25 over passages; `top(question, k)` gives the k best."""

    def __init__(self, passages: list[Passage]):
        from rank_bm25 import BM25Okapi

        self.passages = passages
        self.index = BM25Okapi([normalise(f"{p.doc_id} {p.text}").split() or ["_"] for p in passages]) if passages else None

    @classmethod
    def of_documents(cls, documents: dict[str, str], max_chars: int = 800) -> "PassageIndex":
        return cls([p for doc_id, text in documents.items() for p in chunk_document(doc_id, text, max_chars)])

    def top(self, question: str, k: int) -> list[Passage]:
        if self.index is None:
            return []
        scores = self.index.get_scores(normalise(question).split())
        return [self.passages[i] for i in sorted(range(len(self.passages)), key=lambda i: -scores[i])[:k]]


def reader_messages(question: str, passages: list[Passage]) -> list[dict[str, str]]:
    context = "\n".join(f"[{rank}] {p.text}" for rank, p in enumerate(passages, start=1))
    return [{"role": "user", "content": READER_PROMPT.format(passages=context, question=question)}]


PASSAGES_FILE = "passages.jsonl"


def write_version_passages(store, version: str, max_chars: int = 800) -> dict:
    """Chunk this version's accepted documents into `versions/{v}/passages.jsonl`: only the version's own documents, so
    the index's cost follows the new data. Figures for the asset's metadata."""
    from memo_pipelines.corpus.reading import load_snapshot
    from memo_pipelines.storage.layout import version_key

    snapshot = load_snapshot(store, version)
    rows = [{"doc_id": p.doc_id, "start": p.start, "end": p.end, "text": p.text, "version": version}
            for doc in snapshot.documents for p in chunk_document(doc.doc_id, doc.text, max_chars)]
    store.put_jsonl(version_key(version, PASSAGES_FILE), rows)
    return {"passages": len(rows), "documents": len(snapshot.documents), "characters": sum(len(r["text"]) for r in rows)}


def live_passages(store) -> list[Passage]:
    """The passages of every document still in the landing prefix, each from the newest version that chunked it: a
    deleted document's passages are never retrieved, even before a version records the deletion."""
    from memo_pipelines.storage.history import version_records
    from memo_pipelines.storage.layout import LANDING_PREFIX, doc_id_for, version_key

    landed = {doc_id_for(o.key, LANDING_PREFIX) for o in store.list_objects(LANDING_PREFIX)}
    newest: dict[str, list[dict]] = {}
    for version in sorted(version_records(store, [PASSAGES_FILE])):
        by_doc: dict[str, list[dict]] = {}
        for row in store.get_jsonl(version_key(version, PASSAGES_FILE)):
            by_doc.setdefault(row["doc_id"], []).append(row)
        newest.update(by_doc)
    return [Passage(r["doc_id"], r["start"], r["end"], r["text"]) for doc_id in sorted(newest) if doc_id in landed for r in newest[doc_id]]


class LivePassages:
    """The live index, rebuilt at most every `refresh_s` seconds: a long-running server follows uploads and deletions."""

    def __init__(self, store, refresh_s: float = 30.0):
        import threading

        self.store, self.refresh_s = store, refresh_s
        self._index, self._built_at, self._lock = None, float("-inf"), threading.Lock()

    def index(self) -> PassageIndex:
        import time

        with self._lock:
            if time.monotonic() - self._built_at >= self.refresh_s:
                self._index, self._built_at = PassageIndex(live_passages(self.store)), time.monotonic()
            return self._index
