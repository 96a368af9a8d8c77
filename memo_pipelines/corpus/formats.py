"""Per-format readers: the bytes of one document become raw text, or Unreadable with the reason.

Documents are data: nothing here evaluates, executes or follows anything a document contains (no links,
includes, scripts, PDF actions or JavaScript); JSON is parsed by the json module, HTML by the stdlib tokenizer.
"""

import io
import json
import unicodedata
from html.parser import HTMLParser
from pathlib import PurePosixPath
from typing import Callable


class Unreadable(ValueError):
    """A document that cannot become text; the message is the quarantine reason."""


MAX_PDF_PAGES = 500
MAX_JSON_DEPTH = 64


def decode_text(data: bytes) -> str:
    """UTF-8 text (a BOM is allowed), refusing binary content."""
    if b"\x00" in data:
        raise Unreadable("binary content (NUL bytes)")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise Unreadable(f"not valid UTF-8 at byte {error.start}") from None
    control = sum(1 for ch in text if unicodedata.category(ch) == "Cc" and ch not in "\n\r\t")
    if control > 0.01 * len(text):
        raise Unreadable("binary content (control characters)")
    return text


def read_plain(data: bytes) -> str:
    return decode_text(data)


class _TextOfHTML(HTMLParser):
    """Visible text of an HTML page: block elements break lines; scripts, styles and embedded objects are dropped."""

    SKIP = {"script", "style", "template", "noscript", "head", "iframe", "object", "embed", "svg", "math", "canvas"}
    BLOCKS = {"p", "div", "br", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "table", "section",
              "article", "header", "footer", "blockquote", "pre", "dt", "dd", "hr", "title", "main", "nav", "aside"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0
        self.title = ""
        self.in_title = False

    def handle_starttag(self, tag, attrs):
        if tag in self.SKIP:
            self.skipping += 1
        if tag == "title":
            self.in_title = True
        if tag in self.BLOCKS:
            self.parts.append("\n")
        elif tag in ("td", "th"):
            self.parts.append(" ")

    def handle_startendtag(self, tag, attrs):
        if tag in ("br", "hr"):
            self.parts.append("\n")

    def handle_endtag(self, tag):
        if tag in self.SKIP and self.skipping:
            self.skipping -= 1
        if tag == "title":
            self.in_title = False
        if tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data):
        if self.in_title:
            self.title += data
        elif not self.skipping:
            self.parts.append(data)


def read_html(data: bytes) -> str:
    parser = _TextOfHTML()
    parser.feed(decode_text(data))
    parser.close()
    body = "".join(parser.parts)
    title = " ".join(parser.title.split())
    # the title usually names the subject; keep it as the first line unless the body repeats it
    return f"{title}\n\n{body}" if title and title not in body else body


def _json_lines(value, key: str = "", depth: int = 0) -> list[str]:
    """Readable lines of a JSON value: "key: value" for scalars under a key, strings as they are."""
    if depth > MAX_JSON_DEPTH:
        raise Unreadable(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    if isinstance(value, dict):
        return [line for k, v in value.items() for line in _json_lines(v, str(k), depth + 1)]
    if isinstance(value, list):
        return [line for item in value for line in _json_lines(item, key, depth + 1)]
    if value is None:
        return []
    text = ("yes" if value else "no") if isinstance(value, bool) else str(value)
    text = " ".join(text.split()) if "\n" not in text else text
    return [f"{key}: {text}" if key else text]


def _parse_json(text: str, where: str = ""):
    try:
        return json.loads(text)
    except RecursionError:
        raise Unreadable(f"JSON nested too deeply{where}") from None
    except json.JSONDecodeError as error:
        raise Unreadable(f"not valid JSON{where}: {error.msg} at line {error.lineno} column {error.colno}") from None


def read_json(data: bytes) -> str:
    return "\n".join(_json_lines(_parse_json(decode_text(data))))


def read_jsonl(data: bytes) -> str:
    records = []
    for number, line in enumerate(decode_text(data).splitlines(), start=1):
        if line.strip():
            records.append("\n".join(_json_lines(_parse_json(line, f" on line {number}"))))
    return "\n\n".join(records)


def read_pdf(data: bytes) -> str:
    """Text of a PDF's pages; encrypted (with a password) and image-only PDFs are refused."""
    if not data.lstrip()[:5] == b"%PDF-":
        raise Unreadable("not a PDF (no %PDF- header)")
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted and not reader.decrypt(""):
            raise Unreadable("encrypted PDF (needs a password)")
        if len(reader.pages) > MAX_PDF_PAGES:
            raise Unreadable(f"PDF of {len(reader.pages)} pages is over the {MAX_PDF_PAGES}-page limit")
        pages = [page.extract_text() or "" for page in reader.pages]
    except Unreadable:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError, RecursionError) as error:
        raise Unreadable(f"unreadable PDF ({type(error).__name__}: {str(error)[:120]})") from None
    if not any(page.strip() for page in pages):
        raise Unreadable("PDF has no extractable text (scanned or image-only pages)")
    return "\n\n".join(pages)


READERS: dict[str, tuple[str, Callable[[bytes], str]]] = {
    "": ("text", read_plain),
    ".txt": ("text", read_plain),
    ".text": ("text", read_plain),
    ".md": ("markdown", read_plain),
    ".markdown": ("markdown", read_plain),
    ".html": ("html", read_html),
    ".htm": ("html", read_html),
    ".json": ("json", read_json),
    ".jsonl": ("jsonl", read_jsonl),
    ".pdf": ("pdf", read_pdf),
}


def document_format(key: str) -> str:
    """The reader's name for a key, or Unreadable for a type no reader takes."""
    suffix = PurePosixPath(key).suffix.lower()
    if suffix not in READERS:
        raise Unreadable(f"unsupported document type {suffix!r}")
    return READERS[suffix][0]


def read_document(key: str, data: bytes) -> str:
    document_format(key)
    return READERS[PurePosixPath(key).suffix.lower()][1](data)


def unsafe_key_reason(doc_id: str) -> str | None:
    """Why a key must not become a local path (escapes the work folder), or None when it is safe."""
    if not doc_id or doc_id.endswith("/"):
        return "empty object name"
    if any(unicodedata.category(ch) == "Cc" for ch in doc_id):
        return "key contains control characters"
    if "\\" in doc_id:
        return "key contains a backslash (a path separator on some systems)"
    path = PurePosixPath(doc_id)
    if path.is_absolute() or (doc_id[:1].isalpha() and doc_id[1:2] == ":"):
        return "absolute path in key"
    if any(part == ".." for part in doc_id.split("/")):
        return "key climbs out of the landing folder ('..')"
    return None
