"""Text rules of reflection synthesis, Dagster- and model-free: sentences, chunks with overlap, answer spans, the
question checks of the grounded strategy, the verification rules every pair must pass, and tolerant JSON parsing."""

import html
import json
import re

from memo_pipelines.qa import STOPWORDS, normalise  # noqa: F401  (synthesis modules import them from here)
from memo_pipelines.qa import row_id as reflection_id  # noqa: F401

MONTHS = "January|February|March|April|May|June|July|August|September|October|November|December"
# generic organisation designators (legal forms, kinds of body) as NER gazetteers use them for any English text, not one corpus's names
ORGANISATION_DESIGNATORS = set(
    "Inc Incorporated Ltd Limited LLC LLP Plc Corp Corporation Company Co Group Holdings Partners Industries Bank University "
    "College Institute Academy Laboratory Laboratories Lab Labs Association Foundation Society Council Committee Commission "
    "Agency Ministry Department Authority Trust Club Party Press Airlines Hospital School Museum Church Federation Union League".split()
)
# generic heads of names that are neither a person's nor an organisation's (facilities, places, awards, laws), leaving
# out those that are common surnames (Hall, Park, Street)
THING_DESIGNATORS = set(
    "Building Tower Bridge Centre Center Square Avenue Road Station Airport Harbour Stadium Arena Theatre Theater Plant Dam "
    "Canal River Mountain Island Valley Prize Award Medal Trophy Cup Act Treaty".split()
)


def content_tokens(text: str) -> set[str]:
    return {t for t in normalise(text).split() if t not in STOPWORDS}


def sentences(text: str) -> list[str]:
    out = []
    for line in text.split("\n"):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        for sentence in re.split(r"(?<=[.!?])\s+(?=[A-Z0-9])", line):
            if len(sentence.split()) >= 4:
                out.append(sentence.strip())
    return out


def chunks(text: str, max_chars: int = 1500, overlap_chars: int = 200) -> list[str]:
    """Consecutive pieces of at most about max_chars, cut at paragraph or sentence ends; each piece after the first
    repeats the last units of the one before, up to overlap_chars, so a fact stated across a cut is seen whole."""
    units = []
    for paragraph in re.split(r"\n\s*\n", text):
        paragraph = paragraph.strip()
        if len(paragraph) <= max_chars:
            units += [paragraph] if paragraph else []
        else:
            units += [s for s in re.split(r"(?<=[.!?])\s+", paragraph) if s]
    out: list[str] = []
    current: list[str] = []
    fresh = 0  # units in `current` that no earlier piece holds
    for unit in units:
        if fresh and len("\n\n".join(current + [unit])) > max_chars:
            out.append("\n\n".join(current))
            tail: list[str] = []
            for previous in reversed(current):
                if len("\n\n".join([previous, *tail])) > overlap_chars:
                    break
                tail.insert(0, previous)
            current, fresh = tail, 0
        current.append(unit)
        fresh += 1
    if fresh:
        out.append("\n\n".join(current))
    return out


# -- answer spans -------------------------------------------------------------------------------------------------

NAME = r"(?:[A-Z][a-zA-Z-]+)(?:\s+(?:of\s+|the\s+)?[A-Z][a-zA-Z-]+)*"


def entity_spans(sentence: str) -> list[str]:
    spans = []
    for match in re.finditer(NAME, sentence):
        span = re.sub(r"^(The|A|An|In|Before|After|Each|Every)\s+", "", match.group(0))
        if span and span not in {"The", "A", "An", "In", "Before", "After"} and not re.fullmatch(MONTHS, span):
            spans.append(span)
    return spans


def name_kind(name: str) -> str:
    """What a name is by its words alone: "organisation" if one of them is an organisation designator ("Quillfeather
    Labs"), "person" if it is two or three words and none names a thing ("Rafael Ondo", not "Wren Building"), else
    "name" (a place, a product, a one-word name)."""
    words = set(name.split())
    if words & ORGANISATION_DESIGNATORS:
        return "organisation"
    return "person" if 2 <= len(name.split()) <= 3 and not words & THING_DESIGNATORS else "name"


def answer_spans(sentence: str) -> list[tuple[str, str]]:
    """Candidate answers as (span, kind): dates, years, quantities, and names as "organisation" or "name" (name_kind
    tells a person's name among them) that the sentence states."""
    spans: list[tuple[str, str]] = []
    for match in re.finditer(rf"\b(?:{MONTHS})\s+\d{{4}}\b", sentence):
        spans.append((match.group(0), "date"))
    for match in re.finditer(r"\b(1[89]\d\d|20\d\d)\b", sentence):
        if not any(match.group(0) in s for s, _ in spans):
            spans.append((match.group(0), "year"))
    for match in re.finditer(r"\b\d[\d,.]*(?:\s+[a-z][a-z-]*)?", sentence):
        if not re.fullmatch(r"(1[89]\d\d|20\d\d).*", match.group(0)):
            spans.append((match.group(0), "quantity"))
    for span in entity_spans(sentence):
        spans.append((span, "organisation" if name_kind(span) == "organisation" else "name"))
    return spans


def wh_question(sentence: str, span: str, kind: str) -> str | None:
    """Replace the answer span by a question phrase; an echo question that keeps every other word of the fact."""
    body = sentence.rstrip(".!? ")
    index = body.find(span)
    if index < 0:
        return None
    before, after = body[:index], body[index + len(span) :]
    if kind == "year":
        if before.endswith("in "):
            phrase, before = "in what year", before[:-3]
        else:
            phrase = "what year"
    elif kind == "date":
        if before.endswith("in "):
            phrase, before = "when", before[:-3]
        else:
            phrase = "what date"
    elif kind == "quantity":
        unit = span.split(maxsplit=1)[1] if " " in span else ""
        phrase = f"how many {unit}".strip()
    else:
        is_person = kind == "name" and name_kind(span) == "person"
        phrase = ("who" if is_person else "what") if index == 0 or before.strip().lower() in {"the"} else ("whom" if is_person else "what")
        if before.strip().lower() == "the":
            before = ""
    question = f"{before}{phrase}{after}".strip()
    question = question[0].upper() + question[1:]
    return question + "?"


def natural_questions(sentence: str, span: str, kind: str) -> list[str]:
    """Questions in the form people ask them, for the two sentence shapes that invert safely by rule:
    "A is SPAN." -> "Who/What is A?" and "A was VERBed ... by SPAN." -> "Who VERBed A ...?"."""
    body = sentence.rstrip(".!? ")
    if not body.endswith(span):
        return []
    person = kind == "name" and name_kind(span) == "person"
    wh = "Who" if person else "What"
    head = body[: -len(span)].rstrip()
    out = []
    copula = re.fullmatch(r"(?P<a>.+?) (?P<verb>is|are|was|were)(?: the| a| an)?", head)
    if copula and kind in ("name", "organisation"):
        a = copula["a"][0].lower() + copula["a"][1:] if copula["a"].startswith(("The ", "A ", "An ")) else copula["a"]
        out.append(f"{wh} {copula['verb']} {a}?")
    passive = re.fullmatch(r"(?P<a>.+?) (?:was|were) (?P<verb>[a-z]+ed)(?P<rest>(?: in \d{4})?) by(?: the [a-z]+)?", head)
    if passive and person:
        a = passive["a"][0].lower() + passive["a"][1:] if passive["a"].startswith(("The ", "A ", "An ")) else passive["a"]
        out.append(f"Who {passive['verb']} {a}{passive['rest']}?")
    return out


ASKS_FOR = {
    "year": ("when", "year", "date"),
    "date": ("when", "year", "date", "month"),
    "quantity": ("how many", "how much", "number", "capacity", "how large"),
    "person": ("who", "whom", "person"),
}


def valid_question(question: str, answer: str, sentence: str, kind: str | None = None) -> str | None:
    """None when the question is usable; otherwise the reason to drop it."""
    if not question.endswith("?") or len(question.split()) < 3:
        return "not a question"
    lowered = question.lower()
    if "the answer to" in lowered or lowered.count("?") > 1:
        return "question about a question"
    if normalise(answer) in normalise(question):
        return "question contains its answer"
    if kind == "name" and name_kind(answer) == "person":
        kind = "person"
    if kind in ASKS_FOR and not any(word in lowered for word in ASKS_FOR[kind]):
        return f"question does not ask for a {kind}"
    if kind not in ("person", None) and re.match(r"(who|whom)\b", lowered):
        return f"asks who, but the answer is a {kind}"
    subjects = [s for s in entity_spans(sentence) if normalise(s) != normalise(answer)]
    if subjects and not any(normalise(s) in normalise(question) for s in subjects):
        return "question names no subject of the sentence"
    if not subjects and len(content_tokens(question) & content_tokens(sentence)) < 2:
        return "question unrelated to the sentence"
    return None


# -- verification rules (step 3): every pair, whatever wrote it --------------------------------------------------

PRONOUN = re.compile(r"\b(he|she|him|his|hers|they|them|their|it|its)\b", re.IGNORECASE)
DEICTIC = re.compile(
    r"\bthe (document|text|passage|article|author|above|following)\b|\b(this|that) (document|text|passage|article|company|person|city|place)\b",
    re.IGNORECASE,
)
WH_WORDS = {"What", "Who", "Whom", "Which", "When", "Where", "Why", "How", "In", "On", "At", "For"}
RELATIVE_TIME = re.compile(r"\b(yesterday|today|tomorrow|last (year|month|week)|next (year|month|week)|this (year|month|week)|recently|ago)\b", re.IGNORECASE)


def ungrounded_tokens(text: str, source: str) -> set[str]:
    return content_tokens(text) - content_tokens(source)


def verification_problem(question: str, answer: str, key_answer: str, source: str) -> str | None:
    """None when a pair stands alone and is grounded in its source text; otherwise why it fails verification."""
    if not question.strip() or not answer.strip():
        return "empty field"
    if not question.strip().endswith("?"):
        return "not a question"
    if DEICTIC.search(question):
        return "question refers to the document"
    # "its" is resolved when the question names an entity it can point back to
    if PRONOUN.search(question) and not [e for e in entity_spans(question) if e.split()[0] not in WH_WORDS]:
        return "question has a pronoun and names no entity"
    if RELATIVE_TIME.search(question) or RELATIVE_TIME.search(answer):
        return "relative time"
    if len(ungrounded_tokens(answer, source)) > max(1, len(content_tokens(answer)) // 3):
        return "answer not grounded in the source"
    if key_answer and not content_tokens(key_answer) <= content_tokens(source) | content_tokens(answer):
        return "key answer not grounded in the source"
    return None


# -- model replies ------------------------------------------------------------------------------------------------


def parse_json_list(reply: str | None, required: tuple[str, ...] = ("question", "answer")) -> list[dict] | None:
    """Objects with string fields `required` from a model reply, tolerating prose, code fences, a single object or a
    truncated list; None if nothing usable parses."""
    if not reply:
        return None
    start, end = reply.find("["), reply.rfind("]")
    candidates = [reply[start : end + 1]] if 0 <= start < end else []
    candidates += [f"[{', '.join(re.findall(r'{[^{}]*}', reply))}]"]
    for candidate in candidates:
        try:
            value = json.loads(candidate)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict) and isinstance(value.get("items"), list):
            value = value["items"]  # the structured-output form of the list (steps.json_schema)
        rows = value if isinstance(value, list) else [value]
        found = [r for r in rows if isinstance(r, dict) and all(isinstance(r.get(f), (str, int, bool)) for f in required)]
        if found:
            return found
    return None


# -- documents are data -------------------------------------------------------------------------------------------

INJECTION = re.compile(
    r"\b(ignore|disregard|forget) (all |any )?(your |the |previous |prior |above )*(instructions|rules|prompt)\b"
    r"|\bsystem prompt\b|\byou are now\b|\bnew instructions\b",
    re.IGNORECASE,
)


def looks_like_injection(text: str) -> bool:
    return INJECTION.search(text) is not None


def delimited(doc_id: str, text: str) -> str:
    """A document as data inside tags it cannot close: a tag written in the text is defused, and the id (an uploaded
    file's name) is escaped, so it cannot close its attribute or the tag."""
    body = re.sub(r"</?\s*document\b[^>]*>", "[tag removed]", text, flags=re.IGNORECASE)
    escaped_id = html.escape(doc_id, quote=True).replace("\n", "&#10;").replace("\r", "&#13;")
    return f'<document id="{escaped_id}">\n{body}\n</document>'
