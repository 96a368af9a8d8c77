"""What the rule-built step forms share ("grounded" and the benchmark's regex baseline): two facts about one subject
joined into one pair (step 2), one entity's facts from two documents joined (step 5), and the templates of the
unanswerable probes about an entity."""

from abc import abstractmethod
from collections import Counter

from memo_pipelines.corpus.snapshot import Document
from memo_pipelines.qa import normalise
from memo_pipelines.reflections.steps import StepForm, candidate, rule_verified

# (words that would state the fact, question); person and other entities
PROBE_TEMPLATES = {
    "person": [(("born", "birth"), "In what year was {e} born?"), (("married", "wife", "husband", "spouse"), "Who is {e} married to?"),
               (("studied", "university", "graduated", "educated", "degree"), "Which university did {e} attend?")],
    "other": [(("founded", "established", "formed", "created", "built", "opened", "launched"), "In what year was {e} founded?"),
              (("headquarter", "headquartered", "based"), "Where is {e} headquartered?")],
}


def join_questions(first: str, second: str) -> str:
    return f"{first.rstrip('?')}, and {second[0].lower()}{second[1:]}"


def joined(first: dict, second: dict, step: str, sources: list[str]) -> dict:
    """Two facts as one pair that states both."""
    return candidate(join_questions(first["question"], second["question"]), f"{first['answer']} {second['answer']}", first["key_answer"],
                     step, "grounded_join", sources)


class RuleSteps(StepForm):
    """Steps 2 and 5 by rule over the step-1 facts; a form says what a fact is about (subject) and which of its
    extraction methods consolidation prefers."""

    preferred_methods: dict[str, int] = {}  # method -> rank; unranked methods come after every ranked one

    @abstractmethod
    def subject(self, pair: dict) -> str | None:
        """What the fact is about (consolidation joins two facts about it), or None."""

    def consolidate(self, doc: Document, facts: list[dict], log: Counter) -> list[dict]:
        """Two facts of different sentences about the same subject become one two-fact pair."""
        limit = self.config.consolidations_per_document
        if len(facts) < 2 or limit <= 0:
            return []
        by_subject: dict[str, dict[str, dict]] = {}  # subject -> sentence -> the preferred pair
        for pair in sorted(facts, key=lambda p: self.preferred_methods.get(p["method"], len(self.preferred_methods))):
            subject = self.subject(pair)
            if subject:
                by_subject.setdefault(subject, {}).setdefault(pair["answer"], pair)
        out = []
        for per_sentence in by_subject.values():
            pairs = list(per_sentence.values())
            for first, second in zip(pairs[::2], pairs[1::2]):
                if len(out) < limit:
                    out.append(joined(first, second, "consolidation", [doc.doc_id]))
        return out

    def cross_document(self, entity: str, docs: list[Document], facts_by_doc: dict[str, list[dict]], log: Counter) -> list[dict]:
        """A step-1 fact about the entity from each document, joined into one pair citing both."""
        about = [[p for p in facts_by_doc.get(d.doc_id, []) if p["step"] == "fact_extraction" and normalise(entity) in normalise(p["answer"])]
                 for d in docs]
        ids = [d.doc_id for d in docs]
        out = [joined(first, second, "cross_document", ids)
               for first, second in list(zip(*about))[: self.config.cross_document_pairs_per_group] if first["answer"] != second["answer"]]
        return rule_verified("\n\n".join(d.text for d in docs), out, log)
