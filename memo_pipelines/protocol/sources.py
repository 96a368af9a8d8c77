"""Provenance: which documents a memory answer came from.

The memory keeps no pointers to its training data, so an answer is attributed after the fact: a memory answer used
in the final answer is matched against the reflections the memory was trained on (the promoted model's lineage: its
version's reflections, every ancestor's, and those of versions an update learned late; never rows that failed a
blocking check), and the `source_doc_ids` of the best-matching reflections are the
answer's sources. A reflection matches only when the memory's answer states the reflection's key answer (the name,
number or date, normalised and word-bounded), so "10 people" is never cited to the document that says 340; among
those, the ones whose question is closest to the sub-question win; a name the answer repeats from the sub-question (what
the answer is about: "the Kesby plant") must be in the reflection too, so a fact about the Lorne plant given for the
Kesby plant is not cited to the Lorne document; and a key answer the sub-question already states ("Kesby plant" for
a question about the Kesby plant) is no evidence of anything. No match, no source: an answer the memory did not
learn from a document (general knowledge, a guess, "I don't know") lists none. Only documents still in the corpus are
cited: a reflection whose document was deleted or rewritten in a later version no longer speaks for it.
"""

import os
import re

from memo_pipelines.qa import IDK, QUESTION_WORDS, STOPWORDS, normalise, recalled, token_f1
from memo_pipelines.storage.history import blocked_reflections, document_changes, load_reflections, version_records
from memo_pipelines.storage.layout import LANDING_PREFIX, REFLECTION_CHECKS


def key_answer(row: dict) -> str:
    return row.get("key_answer") or row["answer"]


def can_cite(row: dict) -> bool:
    """A row that can give sources: it has documents, and a key answer that is a fact (not an unanswerable probe's IDK)."""
    return bool(row.get("source_doc_ids")) and row.get("step") != "unanswerable" and normalise(key_answer(row)) != normalise(IDK)


def live_rows(rows_by_version: dict[str, list[dict]], store, landing_prefix: str = LANDING_PREFIX) -> list[dict]:
    """The rows as of the newest manifest in the bucket: a source document deleted or rewritten in a version after the
    row's own drops out of the row's sources, and a row with no source left drops out altogether."""
    manifested = version_records(store, ["manifest.json"])
    changes = document_changes(store, max(manifested), landing_prefix) if manifested else {}
    live = []
    for version, rows in rows_by_version.items():
        for row in rows:
            standing = [doc for doc in row.get("source_doc_ids") or [] if not any(v > version for v, _ in changes.get(doc, []))]
            if standing:
                live.append(row | {"source_doc_ids": standing})
    return live


def subject_names(sub_question: str, memory_answer: str) -> set[str]:
    """Capitalised words and numbers of the sub-question (its first word aside) that the answer repeats, lower case."""
    asked = re.findall(r"\b(?:[A-Z][\w'-]*|\d[\d,.]*)", sub_question.strip())[1 if sub_question.strip()[:1].isupper() else 0 :]
    answered = set(normalise(memory_answer).split())
    return {w for w in (normalise(a) for a in asked) if w and w in answered}


def relation_words(question: str, names: set[str]) -> set[str]:
    """What a question asks about its subject: its words less stopwords, question words, the names the answer repeats,
    and the names themselves with the word after each ("manager" of "Who is the manager of the Kesby plant?": "Kesby
    plant" is the subject)."""
    words = re.findall(r"[\w'-]+", question.strip())
    in_name = {i for i, w in enumerate(words) if i > 0 and w[:1].isupper()}
    in_name |= {i + 1 for i in in_name if i + 1 < len(words)}
    return {w for i, word in enumerate(words) if i not in in_name for w in normalise(word).split()
            if len(w) > 2 and w not in STOPWORDS | QUESTION_WORDS | names and not w.isdigit()}


def same_word(a: str, b: str) -> bool:
    """The same word up to an ending ("manager" and "manages", "owns" and "owner", "employ" and "employs"): a shared
    beginning of 4 letters, or of all but the last letter of the shorter word."""
    return len(os.path.commonprefix([a, b])) >= min(4, min(len(a), len(b)) - 1)


def asks_the_same(asked: set[str], row: dict, names: set[str]) -> bool:
    """The row's question asks what the sub-question asks (`asked`: its relation_words): they share a relation word,
    unless one of them has none to tell ("Where was Rafael Ondo born?" keeps none: the word after a name counts as the
    name's). "Which company owns the Kesby plant?" does not say who manages it, though both name the plant and the same
    company."""
    answered = relation_words(row["question"], names)
    return not asked or not answered or any(same_word(a, w) for a in asked for w in answered)


def names_all(row: dict, names: set[str]) -> bool:
    """The names are in the row's question or in the sentences of its answer that state its key answer (a joined
    answer's other sentence, about something else, does not count)."""
    stating = [s for s in re.split(r"(?<=[.!?])\s+", row["answer"]) if recalled(s, key_answer(row))]
    said = set(normalise(" ".join([row["question"], *stating])).split())
    return all(all(part in said for part in name.split()) for name in names)


class SourceIndex:
    """Built once per promoted model. An answer states a row's key answer only if it contains the key's first word, so
    rows are indexed by that word and an answer is matched against the rows of its own words: its cost follows the
    answer's length and the rows sharing its words, not the size of the history."""

    def __init__(self, reflections: list[dict]):
        self.reflections = [r for r in reflections if can_cite(r)]
        self.by_first_word: dict[str, list[int]] = {}
        for i, row in enumerate(self.reflections):
            words = normalise(key_answer(row)).split()
            if words:
                self.by_first_word.setdefault(words[0], []).append(i)

    def candidates(self, memory_answer: str) -> list[dict]:
        """The rows whose key answer's first word the answer says, in the order of the reflections (so ties between
        equally close rows resolve as a scan of every row would)."""
        positions = {i for word in set(normalise(memory_answer).split()) for i in self.by_first_word.get(word, [])}
        return [self.reflections[i] for i in sorted(positions)]

    def attribute(self, sub_question: str, memory_answer: str) -> list[dict]:
        """The reflections a memory answer to sub_question most plausibly came from (empty when none states it)."""
        names = subject_names(sub_question, memory_answer)
        asked = relation_words(sub_question, names)
        scored = [(round(token_f1(sub_question, row["question"]), 6), row) for row in self.candidates(memory_answer)
                  if recalled(memory_answer, key_answer(row)) and not recalled(sub_question, key_answer(row)) and names_all(row, names)
                  and asks_the_same(asked, row, names)]
        if not scored:
            return []
        best = max(score for score, _ in scored)
        return [row for score, row in scored if score == best]

    @classmethod
    def from_registry(cls, registry, model_id: str, landing_prefix: str = LANDING_PREFIX) -> "SourceIndex":
        """Reflections of every version the model's lineage learned (its own and its ancestors', and the versions each
        update learned late: a rejected version's rows that the next update trained as pending), less rows that failed
        a blocking check and those whose documents have since been deleted or rewritten."""
        learned, seen = set(), set()
        record = registry.get(model_id)
        while record is not None and record["model_id"] not in seen:
            seen.add(record["model_id"])
            learned |= {record["version"]} if record.get("version") else set()
            learned |= set(record.get("update", {}).get("learned_versions", []))
            record = registry.get(record["parent"]) if record.get("parent") else None
        records = version_records(registry.store, ["reflections.jsonl", REFLECTION_CHECKS])
        rows_by_version = {}
        for version in sorted(v for v in learned if "reflections.jsonl" in records.get(v, [])):
            rows = load_reflections(registry.store, version)
            if blocked_reflections(registry.store, version, records[version], rows) is None:
                rows_by_version[version] = rows
        return cls(live_rows(rows_by_version, registry.store, landing_prefix))
