"""Reflections: question-answer pairs distilled from a corpus version, each with its source documents and its step.

`synthesise_reflections` runs the five steps over one version's documents (fact extraction, consolidation,
verification, entity surfacing, cross-document synthesis) in the form the strategy names (steps.py: "grounded" in
grounded.py, "llm_json" in llm_json.py), adds unanswerable probes and extractive entity summaries, caches every step's
output by (document hashes, step, prompt version, strategy, generator, config), and removes exact and near-duplicate
reflections.
"""

import hashlib
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from typing import Callable, Protocol

from memo_pipelines.corpus.snapshot import Document
from memo_pipelines.corpus.dedup import jaccard, shingles
from memo_pipelines.llm.backends import ChatModel
from memo_pipelines.qa import IDK
from memo_pipelines.reflections import grounded, llm_json, nlp  # noqa: F401  (importing grounded and llm_json registers the step forms)
from memo_pipelines.reflections.document import document_pairs
from memo_pipelines.reflections.negatives import fabricated_questions
from memo_pipelines.reflections.steps import (  # noqa: F401  (SynthesisConfig is part of this module's interface)
    PROMPT_VERSION,
    REQUEST_FAILED,
    STEP_FORMS,
    Generator,
    SynthesisConfig,
    related_groups,
    rule_modules,
    rules_fingerprint,
    step_form,
    unanswered,
)
from memo_pipelines.reflections.text import (  # noqa: F401  (public names other modules import from here)
    STOPWORDS,
    answer_spans,
    entity_spans,
    looks_like_injection,
    normalise,
    reflection_id,
    sentences,
    valid_question,
    wh_question,
)

STRATEGIES = tuple(STEP_FORMS)


class Cache(Protocol):
    def get_json(self, key: str, default=None): ...

    def put_json(self, key: str, value) -> str: ...


@dataclass
class ReflectionStats:
    documents: int = 0
    generator_calls: int = 0
    cache_hits: int = 0
    cache_misses: int = 0
    tokens: Counter = field(default_factory=Counter)
    log: Counter = field(default_factory=Counter)  # per-step counters: chunks, drop reasons, verification outcomes
    kept: Counter = field(default_factory=Counter)  # by method
    kept_by_step: Counter = field(default_factory=Counter)
    groups: int = 0
    suspected_injection: list = field(default_factory=list)

    COUNTERS = ("chunks", "passed verification", "failed verification", "rewritten")

    @property
    def verified_share(self) -> float | None:
        checked = self.log["passed verification"] + self.log["failed verification"]
        return round(self.log["passed verification"] / checked, 4) if checked else None

    @property
    def dropped(self) -> Counter:
        return Counter({k: v for k, v in self.log.items() if k not in self.COUNTERS and v})

    def to_json(self) -> dict:
        return {
            "documents": self.documents,
            "chunks": self.log["chunks"],
            "generator_calls": self.generator_calls,
            "cache_hits": self.cache_hits,
            "cache_misses": self.cache_misses,
            "tokens": dict(self.tokens),
            "kept_by_step": dict(self.kept_by_step),
            "kept_by_method": dict(self.kept),
            "dropped_by_reason": dict(self.dropped),
            "verification": {"passed": self.log["passed verification"], "failed": self.log["failed verification"],
                             "rewritten": self.log["rewritten"], "share_passed": self.verified_share},
            "cross_document_groups": self.groups,
            "suspected_injection": self.suspected_injection,
        }


def make_row(question: str, answer: str, source_doc_ids: list[str], step: str, method: str, version: str,
             key_answer: str | None = None, chunk: int | None = None, verified: bool = False, entity: str | None = None) -> dict:
    """One reflection row; `entity` is the name a fabricated negative invented (a later document naming it retires the
    row: storage/history.py), None on every other row."""
    return {
        "id": reflection_id(question, answer),
        "question": question,
        "answer": answer,
        "key_answer": key_answer or answer,
        "source_doc_ids": source_doc_ids,
        "step": step,
        "method": method,
        "version": version,
        "chunk": chunk,
        "verified": verified,
        "entity": entity,
    }


def entity_summaries(documents: list[Document], version: str, statements, max_sentences: int = 3) -> list[dict]:
    """"What is known about X?" answered by the statements that name X (statements(doc): the form's), across the
    version's documents."""
    facts: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for doc in documents:
        for sentence, names in statements(doc):
            for entity in dict.fromkeys(names):
                if len(entity) > 3:
                    facts[entity].append((sentence, doc.doc_id))
    rows = []
    for entity, stated in sorted(facts.items()):
        stated = stated[:max_sentences]
        answer = " ".join(s if s.endswith((".", "!", "?")) else s + "." for s, _ in stated)
        rows.append(make_row(f"What is known about {entity}?", answer, sorted({d for _, d in stated}), "entity_summary", "extractive", version,
                             verified=True))
    return rows


class Deduplicator:
    """Exact duplicates (same normalised question and answer) and near duplicates (questions of character-shingle
    Jaccard >= threshold with the same key answer) keep one row, which cites every source of the rows it absorbed."""

    def __init__(self, threshold: float):
        self.threshold, self.rows = threshold, {}
        self.by_key: dict[str, list[tuple[str, set]]] = defaultdict(list)

    def add(self, row: dict) -> str | None:
        """None if the row was kept, else the drop reason."""
        kept_id = row["id"] if row["id"] in self.rows else None
        reason = "duplicate" if kept_id else None
        question = shingles(row["question"], 5, "chars")
        if kept_id is None:
            for other_id, other in self.by_key[normalise(row["key_answer"])]:
                if jaccard(question, other) >= self.threshold:
                    kept_id, reason = other_id, "near duplicate"
                    break
        if kept_id:
            kept = self.rows[kept_id]
            kept["source_doc_ids"] = sorted(set(kept["source_doc_ids"]) | set(row["source_doc_ids"]))
            return reason
        self.rows[row["id"]] = row
        self.by_key[normalise(row["key_answer"])].append((row["id"], question))
        return None


def rules_key(*roots: str) -> str:
    """What the steps' code contributes to a cache key: the fingerprint of the rule modules `roots` use and, where they
    parse with spaCy, the pipeline's name and version, so an upgrade of either never reuses old reflections."""
    key = rules_fingerprint(*roots)
    if nlp.__name__ in rule_modules(*roots):
        key += f"|{nlp.pipeline_name()}"
    return key


class Synthesis:
    """One version's run: the generator, the cache and the counters shared by the steps."""

    def __init__(self, generator: ChatModel, strategy: str, cache: Cache | None, config: SynthesisConfig, stats: ReflectionStats):
        self.gen, self.strategy, self.cache, self.config, self.stats = Generator(generator, config.json_retries), strategy, cache, config, stats
        self.form = step_form(strategy, self.gen, config)  # a ValueError for a strategy no form is registered under
        self.generator_name = generator.name
        self.lock = threading.Lock()
        self.incomplete: list[str] = []  # steps whose requests failed at the endpoint: not cached, to be asked again
        # settings that do not change a step's output are left out; a step's key names the upstream steps it depends on
        after = ("steps", "entity_summaries", "near_duplicate_threshold", "document_workers", "fail_on_unavailable", "fabricated_negatives_per_document",
                 "hold_out_suspected_injection")
        self.fingerprint = json.dumps({k: v for k, v in asdict(config).items() if k not in after}, sort_keys=True)
        self.rules = rules_key(type(self.form).__module__, *([document_pairs.__module__] if "document" in config.steps and config.document_phrasings > 0 else []))

    def cached(self, docs: list[Document], step: str, compute: Callable[[Counter], list[dict]]) -> list[dict]:
        key = hashlib.sha256(
            f"{'+'.join(d.sha256 for d in docs)}|{step}|{PROMPT_VERSION}|{self.rules}|{self.strategy}|{self.generator_name}|{self.fingerprint}".encode()
        ).hexdigest()
        hit = self.cache.get_json(f"{key}.json") if self.cache is not None else None
        missed = hit is None
        if missed:
            log = Counter()
            hit = {"pairs": compute(log), "log": dict(log)}
            if log[REQUEST_FAILED]:
                with self.lock:
                    self.incomplete.append(f"{'+'.join(d.doc_id for d in docs)} ({step})")
            elif self.cache is not None:
                self.cache.put_json(f"{key}.json", hit)
        with self.lock:
            self.stats.cache_misses += missed
            self.stats.cache_hits += not missed
            self.stats.log.update(hit["log"])  # drop reasons and verification outcomes are reported on a cached run too
        return hit["pairs"]

    def document_pairs(self, doc: Document) -> tuple[list[dict], list[dict]]:
        """Steps 1 to 4 of one document, and its candidate unanswerable probes."""
        steps, form = self.config.steps, self.form
        facts = self.cached([doc], "fact_extraction", lambda log: form.extract_facts(doc, log))
        merged = []
        if "consolidation" in steps:
            merged = self.cached([doc], "consolidation", lambda log: form.consolidate(doc, facts, log))
        pairs = facts + merged
        if "verification" in steps:
            label = "verification" + ("+consolidation" if merged else "")
            pairs = self.cached([doc], label, lambda log: form.verify(doc, facts + merged, log))
        if "entity_surfacing" in steps:
            pairs += self.cached([doc], "entity_surfacing", lambda log: form.surface_entities(doc, log))
        if "document" in steps and self.config.document_phrasings > 0:
            pairs += self.cached([doc], "document", lambda log: document_pairs(doc, self.config.document_phrasings, log))
        probes = []
        if "unanswerable" in steps:
            probes = self.cached([doc], "unanswerable", lambda log: form.probe_questions(doc, log))
        return pairs, probes


def synthesise_reflections(
    documents: list[Document],
    version: str,
    generator: ChatModel,
    strategy: str,
    cache: Cache | None = None,
    progress: Callable[[int, int], None] | None = None,
    config: SynthesisConfig | None = None,
) -> tuple[list[dict], ReflectionStats]:
    """Reflections of one corpus version, deduplicated, each with its source documents, step and method."""
    config = config or SynthesisConfig()
    stats = ReflectionStats(documents=len(documents))
    usage_before = Counter(getattr(generator, "usage", {}))
    run = Synthesis(generator, strategy, cache, config, stats)  # raises the ValueError for an unknown strategy
    run.form.prepare(documents)
    pairs_by_doc, probes = {}, []
    with ThreadPoolExecutor(max_workers=max(1, config.document_workers)) as pool:
        for index, (doc, (pairs, doc_probes)) in enumerate(zip(documents, pool.map(run.document_pairs, documents))):
            pairs_by_doc[doc.doc_id] = pairs
            probes += doc_probes
            if progress:
                progress(index + 1, len(documents))
    stats.suspected_injection = [d.doc_id for d in documents if looks_like_injection(d.text)]
    candidates = [p for pairs in pairs_by_doc.values() for p in pairs]
    if "cross_document" in config.steps:
        # a document that reads like instructions is kept out of prompts that hold other documents
        groupable = [d for d in documents if d.doc_id not in stats.suspected_injection]
        groups = related_groups(groupable, config, run.form.statements)
        stats.groups = len(groups)
        by_id = {d.doc_id: d for d in documents}
        for entity, doc_ids in groups:
            docs = [by_id[i] for i in doc_ids]
            candidates += run.cached(docs, f"cross_document:{entity}", lambda log: run.form.cross_document(entity, docs, pairs_by_doc, log))
    if probes:
        statements = defaultdict(list)
        for doc in documents:
            # what the corpus says of an entity: every sentence that names it, by its capitalised words or the form's names
            names = {n for _, found in run.form.statements(doc) for n in found}
            for sentence in sentences(doc.text):
                for entity in dict.fromkeys([*entity_spans(sentence), *(n for n in names if n in sentence)]):
                    statements[entity].append(sentence)
        candidates += unanswered(probes, statements, config.unanswerable_per_document, stats.log, {d.doc_id: d.text for d in documents})

    if config.hold_out_suspected_injection and stats.suspected_injection:
        # a document that reads like instructions teaches the memory nothing, not even its own pairs; stats name it
        kept = [p for p in candidates if not set(p["sources"]) & set(stats.suspected_injection)]
        stats.log["held out: suspected injection"] += len(candidates) - len(kept)
        candidates = kept
    rows = Deduplicator(config.near_duplicate_threshold)
    trusted = [d for d in documents if d.doc_id not in stats.suspected_injection]
    summaries = entity_summaries(trusted, version, run.form.statements) if config.entity_summaries else []
    for pair in candidates:
        row = make_row(pair["question"], pair["answer"], pair["sources"], pair["step"], pair["method"], version, pair["key_answer"],
                       pair["chunk"], pair["verified"])
        reason = rows.add(row)
        if reason:
            stats.log[reason] += 1
    for row in summaries:
        rows.add(row)
    if "unanswerable" in config.steps and config.fabricated_negatives_per_document > 0:
        # the memory learns to decline questions about names it was never told (reflections/negatives.py)
        known = normalise(" ".join([d.text for d in documents] + [f"{r['question']} {r['answer']}" for r in rows.rows.values()]))
        templates = list(rows.rows.values())
        for doc in trusted:
            for negative in fabricated_questions(templates, doc, known, config.fabricated_negatives_per_document, f"train-{version}"):
                rows.add(make_row(negative["question"], IDK, [doc.doc_id], "unanswerable", "fabricated_entity", version, IDK, verified=True,
                                  entity=negative["entity"]))
                known += " " + normalise(negative["entity"])
    for row in rows.rows.values():
        stats.kept[row["method"]] += 1
        stats.kept_by_step[row["step"]] += 1
    stats.generator_calls = run.gen.calls
    stats.tokens = Counter(getattr(generator, "usage", {})) - usage_before
    if run.incomplete and config.fail_on_unavailable:
        raise GeneratorUnavailable(run.incomplete, stats)
    return list(rows.rows.values()), stats


class GeneratorUnavailable(RuntimeError):
    """The endpoint kept failing for some documents; what did succeed is cached, so a re-execution asks only for the rest."""

    def __init__(self, incomplete: list[str], stats: ReflectionStats):
        super().__init__(f"the generator endpoint failed after its retries for {len(incomplete)} step(s), e.g. {incomplete[:5]}; "
                         f"{stats.cache_misses - len(incomplete)} other step results are cached: re-execute from failure to resume")
        self.incomplete, self.stats = incomplete, stats
