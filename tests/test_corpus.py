"""Text extraction and snapshots: unreadable documents are quarantined with a reason, readable ones kept once."""

import json
from pathlib import Path

import pytest

from memo_pipelines.corpus.snapshot import Unreadable, build_snapshot, extract_text
from tests.pdf_fixtures import encrypted_pdf, image_only_pdf, text_pdf

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
        ("scan.pdf", b"%PDF-1.7 text", "unreadable PDF"),
        ("program.exe", b"MZ\x90\x00", "unsupported document type '.exe'"),
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


FACT = "The Kesby plant employs 340 people."
GOOD_OF_EACH_FORMAT = {
    "plain.txt": (FACT.encode(), FACT),
    "notes.md": (f"# Kesby\n\n{FACT}".encode(), f"# Kesby\n\n{FACT}"),
    "page.html": (
        f"<html><head><title>Kesby</title><script>alert('x')</script><style>p{{}}</style></head>"
        f"<body><p>{FACT}</p><p>Manager:&nbsp;Rafael&amp;Ondo</p><a href='http://example.invalid/x'>link</a></body></html>".encode(),
        f"{FACT}\n\nManager: Rafael&Ondo\nlink",  # the title is dropped when the text already names it
    ),
    "record.json": (json.dumps({"plant": "Kesby", "staff": 340, "open": True, "note": FACT, "tags": ["a", None]}).encode(),
                    f"plant: Kesby\nstaff: 340\nopen: yes\nnote: {FACT}\ntags: a"),
    "records.jsonl": (b'{"fact": "The Kesby plant employs 340 people."}\n\n{"fact": "Tern is a cell."}\n', f"fact: {FACT}\n\nfact: Tern is a cell."),
    "report.pdf": (text_pdf(["Annual report.", FACT]), f"Annual report.\n{FACT}"),
}


@pytest.mark.parametrize("name", sorted(GOOD_OF_EACH_FORMAT))
def test_every_supported_format_becomes_normalised_text(name):
    data, expected = GOOD_OF_EACH_FORMAT[name]
    assert extract_text(name, data) == expected


def test_html_scripts_are_dropped_and_nothing_is_followed():
    page = b"<p>Visible.</p><script src='http://example.invalid/a.js'>steal()</script><iframe src='http://example.invalid'>x</iframe><!-- hidden -->"
    assert extract_text("a.html", page) == "Visible."


BAD_OF_EACH_FORMAT = {
    "empty.md": (b"", "empty document"),
    "whitespace.txt": (b" \n\t \n", "no text after normalisation"),
    "script_only.html": (b"<html><script>var a = 1;</script></html>", "no text after normalisation"),
    "latin1.html": ("<p>caf\u00e9</p>".encode("latin-1"), "not valid UTF-8"),
    "broken.json": (b'{"plant": "Kesby", ', "not valid JSON"),
    "deep.json": (b"[" * 5000 + b"]" * 5000, "nested"),
    "null.json": (b"null", "no text after normalisation"),
    "bad_line.jsonl": (b'{"a": "fine"}\n{not json}\n', "not valid JSON on line 2"),
    "scanned.pdf": (image_only_pdf(), "no extractable text"),
    "locked.pdf": (encrypted_pdf([FACT]), "encrypted PDF"),
    "truncated.pdf": (text_pdf([FACT])[:60], "unreadable PDF"),
    "zip_named.pdf": (b"PK\x03\x04\x14\x00\x00\x00", "not a PDF"),
    "image.png": (b"\x89PNG\r\n\x1a\n", "unsupported document type '.png'"),
}


@pytest.mark.parametrize("name", sorted(BAD_OF_EACH_FORMAT))
def test_a_bad_document_of_each_format_is_quarantined_with_its_reason(name):
    data, reason = BAD_OF_EACH_FORMAT[name]
    with pytest.raises(Unreadable, match=reason):
        extract_text(name, data)


@pytest.mark.parametrize(
    "doc_id, reason",
    [
        ("../escape.txt", "'..'"),
        ("notes/../../etc/passwd.txt", "'..'"),
        ("/etc/passwd.txt", "absolute path"),
        ("C:/Windows/win.ini.txt", "absolute path"),
        ("a\\..\\b.txt", "backslash"),
        ("bell\x07.txt", "control characters"),
    ],
)
def test_keys_that_would_escape_the_work_folder_are_quarantined_unread(doc_id, reason):
    fetched = []
    manifest = [{"key": f"landing/{doc_id}", "size": 10}, {"key": "landing/good.txt", "size": 10}]
    snapshot = build_snapshot("v000001", manifest, lambda key: (fetched.append(key) or GOOD.encode(), "etag"), "landing/")
    assert [d.doc_id for d in snapshot.documents] == ["good.txt"]
    assert snapshot.quarantine[0]["doc_id"] == doc_id and reason in snapshot.quarantine[0]["reason"]
    assert fetched == ["landing/good.txt"]  # the unsafe key is never even downloaded


def test_an_oversized_object_is_quarantined_from_its_manifest_size_without_downloading_it():
    manifest = [{"key": "landing/huge.txt", "size": 5_000_000}]
    snapshot = build_snapshot("v000001", manifest, lambda key: pytest.fail("downloaded"), "landing/", max_bytes=1000)
    assert snapshot.quarantine == [{"doc_id": "huge.txt", "key": "landing/huge.txt", "reason": "document of 5000000 bytes is over the 1000-byte limit"}]


def test_a_vanished_object_is_quarantined_but_a_store_fault_fails_the_snapshot():
    def gone(key):
        raise FileNotFoundError(key)

    assert build_snapshot("v1", [{"key": "landing/a.txt"}], gone, "landing/").quarantine[0]["reason"] == "deleted or rewritten before this version read it"

    def refused(key):
        raise ConnectionError("store unreachable")

    with pytest.raises(ConnectionError):
        build_snapshot("v1", [{"key": "landing/a.txt"}], refused, "landing/")


GERMAN = ("Die Stadt Hamburg liegt an der Elbe und ist mit rund 1,9 Millionen Einwohnern die zweitgrößte Stadt Deutschlands. "
          "Der Hafen ist einer der größten in Europa und wird jedes Jahr von vielen tausend Schiffen angelaufen.")
FRENCH = ("La ville de Lyon est située au confluent du Rhône et de la Saône. Elle est la troisième ville de France par sa "
          "population et un centre important de la gastronomie et de la soie.")
RUSSIAN = "Москва — столица России, город федерального значения и административный центр Центрального федерального округа."
ENGLISH_TABLE = "Player Salary Team LeBron James $30,963,450 Cleveland Cavaliers Al Horford $26,540,100 Boston Celtics " * 3


def test_documents_not_in_english_are_quarantined_with_the_language_found():
    snapshot = snapshot_of({"hamburg.txt": GERMAN.encode(), "lyon.txt": FRENCH.encode(), "moskva.txt": RUSSIAN.encode(),
                            "good.txt": (GOOD + " It is the largest employer of the valley, and most of its staff live in the town.").encode(),
                            "salaries.txt": ENGLISH_TABLE.encode()}, max_bytes=10_000)
    # an English table has few function words in any language: it is kept
    assert [d.doc_id for d in snapshot.documents] == ["good.txt", "salaries.txt"]
    reasons = {q["doc_id"]: q["reason"] for q in snapshot.quarantine}
    assert reasons["hamburg.txt"].startswith("not English") and "'de'" in reasons["hamburg.txt"]
    assert reasons["lyon.txt"].startswith("not English") and "'fr'" in reasons["lyon.txt"]
    assert reasons["moskva.txt"].startswith("not English") and "cyrillic" in reasons["moskva.txt"]


SHORT_FOREIGN = {  # a paragraph a user might upload, each under 20 words
    "de": "Der kleine Hafen liegt am Ende der Bucht. Im Sommer kommen viele Gäste, um dort zu baden und zu segeln.",
    "fr": "Le chat dort sur le toit de la maison. Il attend chaque jour le facteur qui vient avec les lettres.",
    "es": "El gato duerme en el tejado de la casa y espera cada día al cartero que trae las cartas.",
    "it": "Il gatto dorme sul tetto della casa e aspetta ogni giorno il postino che porta le lettere.",
    "nl": "De kat slaapt op het dak van het huis en wacht elke dag op de postbode met de brieven.",
    "sv": "Katten sover på taket och väntar varje dag på brevbäraren som kommer med breven.",
}


def test_a_short_paragraph_not_in_english_is_quarantined_and_short_english_passages_are_kept():
    from memo_pipelines.corpus.language import language_problem

    assert len(SHORT_FOREIGN["de"]) == 103
    snapshot = snapshot_of({f"{code}.txt": text.encode() for code, text in SHORT_FOREIGN.items()} | {"good.txt": GOOD.encode()}, max_bytes=10_000)
    assert [d.doc_id for d in snapshot.documents] == ["good.txt"]
    reasons = {q["doc_id"]: q["reason"] for q in snapshot.quarantine}
    assert all(reasons[f"{code}.txt"].startswith("not English") and f"'{code}'" in reasons[f"{code}.txt"] for code in SHORT_FOREIGN), reasons

    # short English text from public data, titles and foreign names in it included: the opening 100 and 200 characters
    # and the first sentence of every HotpotQA passage, the openings of MuSiQue's
    data = Path(__file__).resolve().parents[2] / "shared" / "data"
    if not (data / "hotpotqa").exists():
        pytest.skip("the shared public data is not here")
    short = []
    for sentences in json.loads((data / "hotpotqa" / "hotpotqa_train_corpus.json").read_text()).values():
        text = "".join(sentences)
        short += [text[:100], text[:200], sentences[0]]
    short += [p["text"][:100] for p in json.loads((data / "musique" / "musique_train_corpus.json").read_text())]
    assert len(short) > 4000 and [t for t in short if language_problem(t)] == []


def test_the_sample_corpus_and_public_passages_are_english():
    from memo_pipelines.corpus.language import language_problem
    from tests.conftest import SAMPLE_DIR

    texts = [p.read_text() for p in SAMPLE_DIR.glob("*.*") if p.suffix in (".txt", ".md", ".html", ".json")]
    shared = SAMPLE_DIR.parents[2] / "shared" / "data" / "hotpotqa" / "hotpotqa_train_corpus.json"
    if shared.exists():
        texts += ["".join(sentences) for sentences in json.loads(shared.read_text()).values()][:300]
    assert [t[:60] for t in texts if language_problem(t)] == []
