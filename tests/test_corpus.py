"""Text extraction and snapshots: unreadable documents are quarantined with a reason, readable ones kept once."""

import pytest

from memo_pipelines.corpus import Unreadable, build_snapshot, extract_text

GOOD = "The Kesby plant employs 340 people."


def snapshot_of(documents: dict[str, bytes], max_bytes: int = 1000):
    manifest = [{"key": f"landing/{name}"} for name in documents]
    return build_snapshot("v000007", manifest, lambda key: (documents[key[len("landing/"):]], f"etag-{key}"), "landing/", max_bytes)


@pytest.mark.parametrize(
    "name, data, reason",
    [
        ("empty.txt", b"", "empty"),
        ("blob.txt", b"PK\x03\x04\x00\x00binary", "NUL"),
        ("latin1.txt", "café".encode("latin-1"), "UTF-8"),
        ("scan.pdf", b"%PDF-1.7 text", "unsupported document type '.pdf'"),
        ("huge.txt", b"word " * 300, "over the 1000-byte limit"),
    ],
)
def test_bad_document_is_quarantined_with_its_reason_and_good_ones_are_kept(name, data, reason):
    with pytest.raises(Unreadable, match=reason):
        extract_text(name, data, max_bytes=1000)

    snapshot = snapshot_of({"good.txt": GOOD.encode(), name: data, "also_good.md": b"# Tern\nA kayak."})
    assert [d.doc_id for d in snapshot.documents] == ["good.txt", "also_good.md"]
    assert snapshot.documents[0].text == GOOD and snapshot.documents[0].etag == "etag-landing/good.txt"
    assert [(q["doc_id"], q["key"]) for q in snapshot.quarantine] == [(name, f"landing/{name}")]
    assert reason in snapshot.quarantine[0]["reason"]


def test_exact_duplicates_are_kept_once_and_recorded():
    snapshot = snapshot_of({"a.txt": GOOD.encode(), "b.txt": b"Another fact.", "copy_of_a.txt": GOOD.encode()})
    assert [d.doc_id for d in snapshot.documents] == ["a.txt", "b.txt"]
    assert snapshot.duplicates == [{"doc_id": "copy_of_a.txt", "duplicate_of": "a.txt"}]
    assert snapshot.quarantine == []


def test_text_is_normalised():
    raw = "\ufeff  Line  one\twith   spaces \r\nLine two\r\n\r\n\r\n\r\nLast\u00a0line  \r\n"
    assert extract_text("doc.txt", raw.encode()) == "Line one with spaces\nLine two\n\nLast line"


def test_blank_lines_holding_whitespace_do_not_defeat_duplicate_removal():
    clean, padded = b"Alpha.\n\n\nBeta.", b"Alpha.  \r\n \r\n\t\r\nBeta."
    assert extract_text("a.txt", padded) == extract_text("a.txt", clean) == "Alpha.\n\nBeta."
    assert snapshot_of({"clean.txt": clean, "padded.txt": padded}).duplicates == [{"doc_id": "padded.txt", "duplicate_of": "clean.txt"}]
