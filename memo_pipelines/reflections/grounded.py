"""The "grounded" form of the steps, for the embedded generator, which cannot write reflections itself (DESIGN.md,
measured): spaCy's parse does the work (clauses.py). Every fact of a sentence is asked several ways, each answered by
one short sentence that states it: its objects and modifiers fronted (step 1), its subject by what the rest of the
clause says (the reverse lookup, step 4), and what is known about each entity (the version's entity summaries);
two facts about one subject are joined (step 2), and one entity's facts from two documents (step 5). The cleft
phrasing ("Which year was it that ...?") is kept out of training: the held-out probes use it (probe_rules.py).
Every question passes the quality filters (quality.py), each drop counted by its reason. The generator is not called:
the parse phrases better than the 135M model did."""

from collections import Counter

from memo_pipelines.corpus.snapshot import Document
from memo_pipelines.qa import IDK
from memo_pipelines.reflections.clauses import clauses, fronted_questions, subject_question
from memo_pipelines.reflections.nlp import parse_documents
from memo_pipelines.reflections.quality import keep_passing
from memo_pipelines.reflections.rule_steps import PROBE_TEMPLATES, RuleSteps
from memo_pipelines.reflections.steps import candidate, register_form, rule_verified


def document_clauses(doc: Document) -> list:
    return clauses(parse_documents([doc.text])[0])


@register_form("grounded")
class GroundedSteps(RuleSteps):
    def prepare(self, documents: list[Document]) -> None:
        parse_documents([d.text for d in documents])  # one nlp.pipe pass over the version: the steps read the parses from the cache

    def statements(self, doc: Document) -> list[tuple[str, list[str]]]:
        return [(c.statement(), c.entities) for c in document_clauses(doc)]

    def extract_facts(self, doc: Document, log: Counter) -> list[dict]:
        """The objects, complements and modifiers of every clause, asked with the wh-phrase first."""
        self.chunks(doc, log)
        out = []
        for clause in document_clauses(doc):
            log["clauses"] += 1
            for question, key, answer in fronted_questions(clause):
                out.append(candidate(question, answer, key, "fact_extraction", "parsed_fronted", [doc.doc_id]) | {"about": clause.subject})
        return keep_passing(out, log)

    def subject(self, pair: dict) -> str | None:
        return pair.get("about")  # the clause's subject: consolidation joins two facts about it

    def surface_entities(self, doc: Document, log: Counter) -> list[dict]:
        """The reverse lookup: a clause's named subject asked for by what the rest of the clause says."""
        limit, out, seen = self.config.surfacing_per_document, [], set()
        if limit <= 0:
            return []
        for clause in document_clauses(doc):
            built = subject_question(clause)
            if built and built[0] not in seen:
                seen.add(built[0])
                out.append(candidate(built[0], clause.statement(), built[1], "entity_surfacing", "parsed_reverse", [doc.doc_id]))
        return rule_verified(doc.text, keep_passing(out, log)[:limit], log)

    def probe_questions(self, doc: Document, log: Counter) -> list[dict]:
        """Template questions about each named entity (a person's birth, an organisation's founding), with the words
        that would answer them; the entity's kind from the named-entity label."""
        if self.config.unanswerable_per_document <= 0:
            return []
        kinds = {}
        for ent in parse_documents([doc.text])[0].ents:
            if ent.label_ in ("PERSON", "ORG", "GPE", "FAC", "WORK_OF_ART", "PRODUCT", "EVENT") and len(ent.text) > 3:
                kinds.setdefault(ent.text, "person" if ent.label_ == "PERSON" else "other")
        out = []
        for entity, kind in kinds.items():
            for words, template in PROBE_TEMPLATES[kind]:
                probe = candidate(template.format(e=entity), IDK, IDK, "unanswerable", "grounded_template", [doc.doc_id])
                out.append(probe | {"entity": entity, "words": words})
        return out
