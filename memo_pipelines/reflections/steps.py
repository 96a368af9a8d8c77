"""The steps of reflection synthesis (DESIGN.md) as one interface, `StepForm`, and the registry of its forms.

A form is chosen by name (the strategy): "grounded" (grounded.py) for the embedded generator, which cannot write
reflections itself, and "llm_json" (llm_json.py) for a capable OpenAI-compatible endpoint. This module holds what every
form shares: the synthesis config, the generator as the steps use it, the candidate pair, the verification loop and
its rules, the grouping of related documents, and the check that keeps only unanswerable probes.

A step takes a document (or a group of documents), returns candidate pairs, and counts what it dropped and why in
`log`; candidates are dicts with question, answer, key_answer, step, method, sources (document ids), chunk, verified.
"""

import ast
import functools
import hashlib
import importlib.util
import threading
from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from memo_pipelines.corpus.snapshot import Document
from memo_pipelines.llm.backends import ChatModel
from memo_pipelines.qa import QUESTION_WORDS
from memo_pipelines.reflections.text import chunks, content_tokens, entity_spans, normalise, parse_json_list, sentences, verification_problem

PROMPT_VERSION = "five-steps-v1"


@dataclass(frozen=True)
class SynthesisConfig:
    """What the synthesis runs and how much it may spend; stored beside the reflections it produced."""

    steps: tuple[str, ...] = ("fact_extraction", "consolidation", "verification", "entity_surfacing", "document", "cross_document", "unanswerable")
    chunk_chars: int = 1500
    chunk_overlap: int = 200
    max_rewrites: int = 1  # verification rounds that may rewrite a failing pair before it is dropped
    json_retries: int = 1  # re-asks of a generator reply that is not the JSON asked for
    phrased_per_sentence: int = 3  # grounded: answer spans per sentence the generator phrases (rule templates cover every span)
    consolidations_per_document: int = 3
    surfacing_per_document: int = 4
    cross_document_groups: int = 20  # bound on groups of related documents per version
    cross_document_pairs_per_group: int = 2
    max_documents_per_entity: int = 4  # an entity named by more documents is too common to group by
    unanswerable_per_document: int = 1
    near_duplicate_threshold: float = 0.8  # question similarity (character shingles) at which two same-answer rows are one
    entity_summaries: bool = True
    fabricated_negatives_per_document: int = 2  # questions about names no document has, answered "I don't know"
    # whole-document teaching (step "document", document.py): questions of this many types per sentence, each answered by
    # the sentence; 2 asks every sentence a demask and a link or topic question (benchmarks/RESULTS.md, human questions)
    document_phrasings: int = 2
    document_workers: int = 1  # documents synthesised at once (an endpoint serves several; an in-process model one)
    fail_on_unavailable: bool = True  # endpoint failures fail the step (resumable) instead of leaving documents out
    hold_out_suspected_injection: bool = True  # rows of a document that reads like instructions (text.looks_like_injection) are not trained


# an endpoint that failed after its retries, unlike a reply that is garbage, says nothing about the document: the step's
# output is not cached and the version's reflections step fails, so a re-execution asks again for just those documents
REQUEST_FAILED = "generator request failed"


OPTIONAL_FIELDS = ("key", "kind", "entity", "question", "answer", "verdict")
MAX_FIELD_CHARS, MAX_PAIRS = 400, 64  # bounds of json_schema; 64 pairs of ~20 tokens already exceed a 1,024-token reply


def json_schema(required: tuple[str, ...]) -> dict:
    """The reply a step asks for as an OpenAI `response_format`: an object whose "items" is the list of pairs (structured
    output wants an object at the top), each with the required fields; parse_json_list reads it, and repairs replies of an
    endpoint without structured output. Bounded, as the protocol's reply formats are, so a small model cannot ramble: a
    field is at most a few sentences, and a list holds more pairs than a reply's token budget fits anyway."""
    value = {"type": ["string", "integer"], "maxLength": MAX_FIELD_CHARS}  # no numeric bound: it would cut a large number short
    fields = dict.fromkeys([*required, *OPTIONAL_FIELDS])
    item = {"type": "object", "properties": {f: value for f in fields}, "required": list(required)}
    return {"type": "json_schema", "json_schema": {"name": "reflection_pairs", "schema": {
        "type": "object", "properties": {"items": {"type": "array", "items": item, "maxItems": MAX_PAIRS}}, "required": ["items"]}}}


class Generator:
    """The generator as the steps use it: counts calls, re-asks for JSON a bounded number of times, never raises on a
    failed request (it is counted as REQUEST_FAILED, and the step that made it is not cached)."""

    def __init__(self, model: ChatModel, json_retries: int):
        self.model, self.json_retries, self.calls = model, json_retries, 0
        self._lock = threading.Lock()

    def count(self, calls: int) -> None:
        with self._lock:
            self.calls += calls

    def phrase(self, prompts: list[str], log: Counter) -> list[str | None]:
        if not prompts:
            return []
        self.count(len(prompts))
        replies = self.model.complete(prompts, max_new_tokens=24, stop="\n", errors="none")
        log[REQUEST_FAILED] += sum(reply is None for reply in replies)
        return replies

    def ask_json(self, prompts: list[str], log: Counter, required=("question", "answer"), max_new_tokens: int = 1024) -> list[list[dict] | None]:
        results: list[list[dict] | None] = [None] * len(prompts)
        conversations = {i: [{"role": "user", "content": p}] for i, p in enumerate(prompts)}
        last: dict[int, str | None] = {}
        for _ in range(1 + self.json_retries):
            if not conversations:
                break
            order = sorted(conversations)
            self.count(len(order))
            structured = {"response_format": json_schema(required)} if getattr(self.model, "structured_output", False) else {}
            replies = self.model.chat([conversations[i] for i in order], max_new_tokens=max_new_tokens, errors="none", **structured)
            for i, reply in zip(order, replies):
                parsed = parse_json_list(reply, required)
                if parsed is not None:
                    results[i] = parsed
                    del conversations[i]
                else:
                    last[i] = reply
                    if reply is not None:  # show the model its reply: a greedy model asked again alone says it again
                        conversations[i] = conversations[i][:1] + [
                            {"role": "assistant", "content": reply},
                            {"role": "user", "content": "That was not the JSON list asked for. Reply with only the JSON list."},
                        ]
        for i in conversations:
            log[REQUEST_FAILED if last.get(i) is None else "unparseable reply"] += 1
        return results


def candidate(question, answer, key_answer, step, method, sources, chunk=None) -> dict:
    question, answer = str(question).strip(), str(answer).strip()
    return {"question": question, "answer": answer, "key_answer": str(key_answer or answer).strip(), "step": step, "method": method,
            "sources": sorted(sources), "chunk": chunk, "verified": False}


def fact(sentence: str) -> str:
    return sentence.rstrip(".!? ") + "."


def source_text(doc: Document, pair: dict, config: SynthesisConfig) -> str:
    """The text a pair must be grounded in: its chunk, or the whole document for a pair of no one chunk."""
    if pair.get("chunk") is None:
        return doc.text
    pieces = chunks(doc.text, config.chunk_chars, config.chunk_overlap)
    return pieces[pair["chunk"]] if pair["chunk"] < len(pieces) else doc.text


def rule_verified(doc_text: str, pairs: list[dict], log: Counter) -> list[dict]:
    """Steps 4 and 5 pass the same rules as step 3 (their pairs are built or written from the text they cite)."""
    out = []
    for pair in pairs:
        problem = verification_problem(pair["question"], pair["answer"], pair["key_answer"], doc_text)
        if problem:
            log[problem] += 1
            log["failed verification"] += 1
        else:
            log["passed verification"] += 1
            out.append({**pair, "verified": True})
    return out


def related_groups(documents: list[Document], config: SynthesisConfig, statements) -> list[tuple[str, list[str]]]:
    """Pairs of documents that name the same entity, rarest entities first, at most config.cross_document_groups;
    statements(doc) gives each document's (statement, entity names)."""
    named: dict[str, list[str]] = {}
    for doc in documents:
        for entity in dict.fromkeys(e for _, names in statements(doc) for e in names if len(e) > 3):
            named.setdefault(entity, []).append(doc.doc_id)
    groups, seen = [], set()
    for entity, doc_ids in sorted(named.items(), key=lambda item: (len(item[1]), item[0])):
        if not 2 <= len(doc_ids) <= config.max_documents_per_entity:
            continue
        for a, b in zip(doc_ids, doc_ids[1:]):
            if (a, b) not in seen and len(groups) < config.cross_document_groups:
                seen.add((a, b))
                groups.append((entity, [a, b]))
    return groups


def stems(text: str) -> set[str]:
    # five-letter prefixes: "employ" and "employs" are one word to this check
    return {t[:5] for t in content_tokens(text) if t not in QUESTION_WORDS}


def unanswered(probes: list[dict], statements: dict[str, list[str]], limit: int, log: Counter,
               source_texts: dict[str, str]) -> list[dict]:
    """Probes whose entity is named in the corpus but never with the words that would answer them.

    source_texts: doc_id -> text; an answering word anywhere in the probe's own document also counts, since a sentence
    that says it through a pronoun ("It was established in 1991") names no entity and is missing from `statements`.
    Training "I don't know" on a question the document answers would teach the memory to decline it."""
    out = []
    for probe in probes:
        said = " ".join(statements.get(probe["entity"], []))
        if not said or probe["entity"] not in probe["question"]:
            log["probe names no entity of the corpus"] += 1
            continue
        if probe.get("words"):
            own = " ".join(source_texts.get(doc_id, "") for doc_id in probe["sources"])
            answered = any(word in normalise(f"{said} {own}") for word in probe["words"])
        else:
            asked = stems(probe["question"]) - stems(probe["entity"])
            answered = len(asked & stems(said)) > len(asked) // 2
        if answered:
            log["probe answered by the corpus"] += 1
            continue
        if sum(p["sources"] == probe["sources"] for p in out) < limit:
            out.append({**probe, "verified": True})
    return out


class StepForm(ABC):
    """One form of every step, built on a generator and a config. Verification is shared: rule checks on every pair,
    and a form that judges pairs (`judge`) may have a failing pair rewritten for `rewrite_rounds` rounds."""

    name = ""  # set by register_form

    def __init__(self, generator: Generator, config: SynthesisConfig):
        self.gen, self.config = generator, config

    def prepare(self, documents: list[Document]) -> None:
        """Called once with the version's documents before the steps run (a form that parses them does it here, in one batch)."""

    def statements(self, doc: Document) -> list[tuple[str, list[str]]]:
        """The document's statements and the entity names each one names: for entity summaries, cross-document groups
        and the probes' check that the corpus does not answer them. Here: its sentences and their capitalised names."""
        return [(s, [e for e in entity_spans(s) if len(e) > 3]) for s in sentences(doc.text)]

    def chunks(self, doc: Document, log: Counter) -> list[str]:
        pieces = chunks(doc.text, self.config.chunk_chars, self.config.chunk_overlap)
        log["chunks"] += len(pieces)
        return pieces

    @abstractmethod
    def extract_facts(self, doc: Document, log: Counter) -> list[dict]:
        """Step 1: the facts a document states (and, with a capable generator, those that follow from it)."""

    @abstractmethod
    def consolidate(self, doc: Document, facts: list[dict], log: Counter) -> list[dict]:
        """Step 2: pairs that each state several of a document's facts."""

    @property
    def rewrite_rounds(self) -> int:
        return 0

    def judge(self, doc: Document, pairs: list[dict], problems: list[str | None], log: Counter) -> list[dict | None]:
        """A verdict per pair ({"verdict": "keep" | "rewrite" | "drop", "question", "answer", "key"}) or None (keep if
        the rules pass); this form only applies the rules."""
        return [None] * len(pairs)

    def verify(self, doc: Document, pairs: list[dict], log: Counter) -> list[dict]:
        """Step 3: rule checks on every pair (self-contained, grounded in its chunk) and the form's verdicts; a pair
        judged "rewrite" is checked again, for at most rewrite_rounds rounds; what still fails is dropped."""
        kept, pending = [], pairs
        for round_ in range(1 + self.rewrite_rounds):
            problems = [verification_problem(p["question"], p["answer"], p["key_answer"], source_text(doc, p, self.config)) for p in pending]
            retry = []
            for pair, problem, verdict in zip(pending, problems, self.judge(doc, pending, problems, log)):
                choice = (verdict or {}).get("verdict", "keep")
                if choice == "keep" and problem is None:
                    kept.append({**pair, "verified": True})
                elif choice == "rewrite" and round_ < self.rewrite_rounds and verdict.get("question") and verdict.get("answer"):
                    log["rewritten"] += 1
                    retry.append({**pair, "question": str(verdict["question"]), "answer": str(verdict["answer"]),
                                  "key_answer": str(verdict.get("key") or verdict["answer"]), "method": pair["method"] + "+rewritten"})
                else:
                    log["failed verification"] += 1
                    log[problem or "judged unsupported by the document"] += 1
            pending = retry
            if not pending:
                break
        for pair in pending:
            log["failed verification"] += 1
            log["rewrite failed verification"] += 1
        log["passed verification"] += len(kept)
        return kept

    @abstractmethod
    def surface_entities(self, doc: Document, log: Counter) -> list[dict]:
        """Step 4: reverse-lookup pairs that describe an entity without naming it; the answer names it."""

    @abstractmethod
    def cross_document(self, entity: str, docs: list[Document], facts_by_doc: dict[str, list[dict]], log: Counter) -> list[dict]:
        """Step 5: pairs that need facts of every document of a group that names `entity`."""

    @abstractmethod
    def probe_questions(self, doc: Document, log: Counter) -> list[dict]:
        """Candidate unanswerable probes of one document; `unanswered` keeps those the whole corpus does not answer."""


STEP_FORMS: dict[str, type[StepForm]] = {}


def register_form(name: str):
    """Class decorator: the step form chosen by the strategy `name`."""

    def register(cls: type[StepForm]) -> type[StepForm]:
        cls.name = name
        STEP_FORMS[name] = cls
        return cls

    return register


RULE_CODE = ("memo_pipelines.reflections.", "memo_pipelines.qa")  # the code whose change changes a step's output


@functools.cache
def rule_modules(*roots: str) -> tuple[str, ...]:
    """The `roots` and the modules of RULE_CODE they import, directly or through each other (imports inside functions
    count), sorted: what a step's output depends on besides its input and config."""
    seen, todo = set(), list(roots)
    while todo:
        name = todo.pop()
        if name in seen or name not in roots and not name.startswith(RULE_CODE) or importlib.util.find_spec(name) is None:
            continue
        seen.add(name)
        for node in ast.walk(ast.parse(Path(importlib.util.find_spec(name).origin).read_text())):
            if isinstance(node, ast.Import):
                todo += [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                todo += [node.module] + [f"{node.module}.{alias.name}" for alias in node.names if node.module.endswith("reflections")]
    return tuple(sorted(seen))


@functools.cache
def rules_fingerprint(*roots: str) -> str:
    """sha256 of the source of rule_modules(roots): an upgrade that changes any rule gives new cache keys."""
    digest = hashlib.sha256()
    for name in rule_modules(*roots):
        digest.update(name.encode() + b"\0" + Path(importlib.util.find_spec(name).origin).read_bytes() + b"\0")
    return digest.hexdigest()


def step_form(name: str, generator: Generator, config: SynthesisConfig) -> StepForm:
    if name not in STEP_FORMS:
        raise ValueError(f"unknown reflection strategy {name!r}; choose one of {sorted(STEP_FORMS)}")
    return STEP_FORMS[name](generator, config)
