"""Provenance: which documents a memory answer came from.

The memory keeps no pointers to its training data, so an answer is attributed after the fact: a memory answer used
in the final answer is matched against the reflections the memory was trained on (the promoted model's lineage: its
version's reflections and every ancestor's), and the `source_doc_ids` of the best-matching reflections are the
answer's sources. A reflection matches when its answer agrees with the memory's answer (token F1 >= min_answer_f1);
among those, the ones whose question is closest to the sub-question win. No match, no source: an answer the memory
did not learn from a document (general knowledge, a guess) lists none.
"""

from memo_pipelines.evaluation.gates import token_f1
from memo_pipelines.storage.layout import version_key


class SourceIndex:
    def __init__(self, reflections: list[dict], min_answer_f1: float = 0.6):
        self.reflections = [r for r in reflections if r.get("source_doc_ids")]
        self.min_answer_f1 = min_answer_f1

    def attribute(self, sub_question: str, memory_answer: str) -> list[dict]:
        """The reflections a memory answer to sub_question most plausibly came from (empty when none agrees)."""
        scored = []
        for row in self.reflections:
            answer_f1 = max(token_f1(memory_answer, row["answer"]), token_f1(memory_answer, row.get("key_answer") or row["answer"]))
            if answer_f1 >= self.min_answer_f1:
                scored.append((round(answer_f1 + token_f1(sub_question, row["question"]), 6), row))
        if not scored:
            return []
        best = max(score for score, _ in scored)
        return [row for score, row in scored if score == best]

    @classmethod
    def from_registry(cls, registry, model_id: str) -> "SourceIndex":
        """Reflections of every version in the model's lineage (it was trained on them, or on top of models that were)."""
        rows, seen = [], set()
        record = registry.get(model_id)
        while record is not None and record["model_id"] not in seen:
            seen.add(record["model_id"])
            if record.get("version"):
                key = version_key(record["version"], "reflections.jsonl")
                if registry.store.exists(key):
                    rows += registry.store.get_jsonl(key)
            record = registry.get(record["parent"]) if record.get("parent") else None
        return cls(rows)
