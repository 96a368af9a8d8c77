"""The "grounded_regex" form of the steps, the reflections benchmark's "before" arm: the grounded generator before the
spaCy parse (memo_pipelines/reflections/grounded.py); importing this module registers it. Answers are spans and sentences of the text found by regular
expressions, the embedded model phrases step-1 questions, and every other step is built by rule from the text and the
step-1 facts."""

import re
from collections import Counter

from memo_pipelines.corpus.snapshot import Document
from memo_pipelines.qa import IDK
from memo_pipelines.reflections.rule_steps import PROBE_TEMPLATES, RuleSteps
from memo_pipelines.reflections.steps import candidate, fact, register_form, rule_verified
from memo_pipelines.reflections.text import (
    STOPWORDS,
    WH_WORDS,
    answer_spans,
    entity_spans,
    name_kind,
    natural_questions,
    normalise,
    sentences,
    valid_question,
    wh_question,
)

PHRASING_PROMPT = """Write a question whose answer is the given answer, using the sentence.
Sentence: The Eiffel Tower was completed in 1889 in Paris.
Answer: 1889
Question: In what year was the Eiffel Tower completed?

Sentence: Marie Curie was born in Warsaw.
Answer: Warsaw
Question: Where was Marie Curie born?

Sentence: {sentence}
Answer: {answer}
Question:"""

COPULA = {"is", "was", "are", "were", "has", "had", "became", "remains"}

NOT_ENTITIES = set("It He She They His Her Its Their This That These Those Such From When After While During However Although Since".split())


def subject_of(pair: dict) -> str | None:
    """The first entity the question names that is not its answer: what the pair is about."""
    for entity in entity_spans(pair["question"]):
        if normalise(entity) != normalise(pair["key_answer"]) and len(entity) > 3 and entity.split()[0] not in WH_WORDS:
            return entity
    return None


def is_verb(word: str) -> bool:
    return word in COPULA or (len(word) > 3 and (word.endswith("ed") or (word.endswith("s") and not word.endswith("ss"))))


def reverse_question(sentence: str) -> tuple[str, str] | None:
    """("Which plant employs 340 people?", "Kesby") from "The Kesby plant employs 340 people.": the sentence's
    subject entity becomes the answer and the rest of the sentence describes it."""
    body = re.sub(r"\s*\([^)]*\)", "", sentence).rstrip(".!? ")  # parentheses (pronunciations, dates) describe nothing
    names = entity_spans(body)
    if not names:
        return None
    entity = names[0]
    lead = body[: body.find(entity)].strip(" \"'`")
    if lead not in ("", "The") or entity in NOT_ENTITIES:
        return None
    tail = body[body.find(entity) + len(entity) :]
    if re.match(r"['’]s\b|\w", tail):  # "Hall's assertions": the subject is not the entity; a letter: a cut word
        return None
    tail = tail.strip(" \"'`")
    appositive = re.match(r",[^,]{1,60},\s*", tail)  # "Publix, commonly known as ..., is ..."
    rest = (tail[appositive.end() :] if appositive else tail).split()
    if len(rest) < 3 or not rest[0].islower():
        return None
    if is_verb(rest[0]) and not (len(rest) > 1 and rest[1] in COPULA):
        noun, predicate = None, rest
    elif is_verb(rest[1]) and re.fullmatch("[a-z]{3,}", rest[0]) and rest[0] not in STOPWORDS:
        noun, predicate = rest[0], rest[1:]
    else:
        return None
    predicate_text = " ".join(predicate)
    if normalise(entity) in normalise(predicate_text):
        return None
    # "Who" only for a name that acts ("Rafael Ondo joined ..."); "X is a river" says nothing of a person
    kind = name_kind(entity)
    person = noun is None and kind == "person" and predicate[0] not in COPULA
    wh = f"Which {noun}" if noun else "Who" if person else "Which organisation" if kind == "organisation" else "What"
    return f"{wh} {predicate_text}?", entity


@register_form("grounded_regex")
class RegexGroundedSteps(RuleSteps):
    preferred_methods = {"llm_phrased": 0, "wh_template": 1}

    def extract_facts(self, doc: Document, log: Counter) -> list[dict]:
        """Every answer span of every sentence, asked by rule templates; the generator phrases a question for the first
        phrased_per_sentence spans of a sentence, kept only if it passes the question checks."""
        seen, items = set(), []
        for index, piece in enumerate(self.chunks(doc, log)):
            for sentence in sentences(piece):
                if sentence not in seen:  # an overlapping sentence is phrased once
                    seen.add(sentence)
                    items += [(index, sentence, span, kind) for span, kind in answer_spans(sentence)]
        per_sentence, to_phrase = Counter(), []
        for position, (_, sentence, _, _) in enumerate(items):
            per_sentence[sentence] += 1
            if per_sentence[sentence] <= self.config.phrased_per_sentence:
                to_phrase.append(position)
        prompts = [PHRASING_PROMPT.format(sentence=items[p][1], answer=items[p][2]) for p in to_phrase]
        phrased = dict(zip(to_phrase, self.gen.phrase(prompts, log)))
        out = []
        for position, (index, sentence, span, kind) in enumerate(items):
            # the memory answers with the whole stated fact; the span is what recall is scored on
            if position in phrased:
                reason = valid_question(phrased[position] or "", span, sentence, kind)
                if reason is None:
                    out.append(candidate(phrased[position], fact(sentence), span, "fact_extraction", "llm_phrased", [doc.doc_id], index))
                else:
                    log[reason] += 1
            for template in [wh_question(sentence, span, kind), *natural_questions(sentence, span, kind)]:
                if template and valid_question(template, span, sentence) is None:
                    out.append(candidate(template, fact(sentence), span, "fact_extraction", "wh_template", [doc.doc_id], index))
        return out

    def subject(self, pair: dict) -> str | None:
        return subject_of(pair)

    def surface_entities(self, doc: Document, log: Counter) -> list[dict]:
        limit = self.config.surfacing_per_document
        if limit <= 0:
            return []
        out, seen = [], set()
        for sentence in sentences(doc.text):
            built = reverse_question(sentence)
            if built and built[0] not in seen and len(out) < limit:
                seen.add(built[0])
                out.append(candidate(built[0], fact(sentence), built[1], "entity_surfacing", "grounded_reverse", [doc.doc_id]))
        return rule_verified(doc.text, out, log)

    def probe_questions(self, doc: Document, log: Counter) -> list[dict]:
        """Template questions about each entity (a person's birth, an organisation's founding), with the words that
        would answer them."""
        if self.config.unanswerable_per_document <= 0:
            return []
        out = []
        for entity in dict.fromkeys(e for s in sentences(doc.text) for e in entity_spans(s) if len(e) > 3):
            for words, template in PROBE_TEMPLATES["person" if name_kind(entity) == "person" else "other"]:
                probe = candidate(template.format(e=entity), IDK, IDK, "unanswerable", "grounded_template", [doc.doc_id])
                out.append(probe | {"entity": entity, "words": words})
        return out
