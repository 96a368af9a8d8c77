"""The "grounded_regex" form of the steps, the reflections benchmark's "before" arm: the grounded generator before the
spaCy parse (memo_pipelines/reflections/grounded.py); importing this module registers the form and its held-out
probes. Answers are spans and sentences of the text found by regular expressions, the embedded model phrases step-1
questions, and every other step is built by rule from the text and the step-1 facts. Its probes ask a fact another way
than its training templates do (the wh-phrase fronted with do-support, the reverse direction)."""

import re
from collections import Counter

from memo_pipelines.corpus.snapshot import Document
from memo_pipelines.qa import IDK
from memo_pipelines.reflections.probe_rules import probe_row, register_fact_probes
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


# -- the held-out probes of this form ------------------------------------------------------------------------------

COPULAS = ("is", "was", "are", "were")
SUBJECT = re.compile(r"(?:(?:The|the|A|An) )?[A-Z][\w-]*(?: [A-Z][\w-]*)*(?: [a-z]{3,})?")
AUXILIARIES = {"is", "was", "are", "were", "be", "been", "being", "has", "had", "have", "will", "would", "can", "could", "may", "might"}
# closed-class English words (pronouns, determiners, prepositions, conjunctions) that cannot head a subject
NOT_SUBJECTS = set("It He She They His Her Its Their This That These Those Such Other However Before After When While On In At By "
                   "For From During Since Although Though With Without Once As If Because Until Upon Under Over Into Through Within "
                   "Among Between Against Despite About Of To And But Or So Then Also Both Each Every Some Many Most".split())


def verb_lemma(verb: str) -> str | None:
    """The base form of a regular -s or -ed verb (English morphology, not a word list); None for anything else."""
    if re.fullmatch(r"[a-z]+(ss|us|is)", verb) or len(verb) < 4:
        return None
    if verb.endswith("ies"):
        return verb[:-3] + "y"
    if re.search(r"(ch|sh|x|ss|zz|o)es$", verb):
        return verb[:-2]
    if verb.endswith("ed"):
        stem = verb[:-2]
        if stem.endswith("i"):
            return stem[:-1] + "y"
        if re.search(r"([b-df-hj-np-tv-z])\1$", stem) and not stem.endswith(("ll", "ss", "ff", "zz")):
            return stem[:-1]
        if re.search(r"(at|ut|iv|ov|iz|is|ur|ac|ic|uc|ag|bl|tl|ir|as|os|us|ang|ar|v|dg)$", stem):
            return stem + "e"
        return stem
    if verb.endswith("s") and not verb.endswith("'s"):
        return verb[:-1]
    return None


def lower_first(text: str) -> str:
    return text[0].lower() + text[1:] if text.startswith(("The ", "A ", "An ")) else text


def fronted_question(sentence: str, span: str, kind: str) -> str | None:
    """"The Kesby plant employs 340 people." -> "How many people does the Kesby plant employ?": the wh-phrase first,
    do-support and the verb's base form, modifiers after the answer left out (training asks in the sentence's order)."""
    body = sentence.rstrip(".!? ")
    index = body.find(span)
    if index <= 0:
        return None
    head, tail = body[:index].rstrip(), body[index + len(span):]
    words = head.split()
    verb_at = next((i for i, w in enumerate(words) if i > 0 and w.islower() and verb_lemma(w)), None)
    if verb_at is None:
        return None
    subject, verb, middle = " ".join(words[:verb_at]), words[verb_at], words[verb_at + 1:]
    # a plain entity-headed subject ("Rafael Ondo", "The Kesby plant") and a short complement: anything longer does
    # not invert safely by rule
    if (not SUBJECT.fullmatch(subject) or subject.split()[0] in NOT_SUBJECTS or set(words[:verb_at + 1]) & AUXILIARIES
            or len(middle) > 3 or re.search(r"[\d,;:()\"]", " ".join(middle))):
        return None
    auxiliary = "did" if verb.endswith("ed") else "does"
    if middle and middle[-1] in ("the", "a", "an"):
        middle = middle[:-1]
    preposition = ""
    if middle and middle[-1] in ("in", "on", "at", "since", "by", "from", "to", "for", "with"):
        preposition, middle = middle[-1], middle[:-1]
    if kind in ("year", "date"):
        wh, preposition = "When", ""
    elif kind == "quantity":
        unit = span.split(maxsplit=1)[1] if " " in span else ""
        wh = f"How many {unit}".strip() if unit else "How many"
    elif kind == "name" and 2 <= len(span.split()) <= 3:
        wh = "Who" if not preposition else f"{preposition.capitalize()} whom"
        preposition = ""
    else:
        wh = "What"
        if middle and not preposition:
            return None  # "X released their debut CD": the answer is an apposition, not what the verb takes
    if tail.strip() and kind not in ("year", "date") and not tail.startswith((",", " in ", " on ", " at ")):
        return None  # the answer is not the end of the clause: leaving the rest out would change the fact asked for
    rest = " ".join([*middle, preposition]).strip()
    return f"{wh} {auxiliary} {lower_first(subject)} {verb_lemma(verb)}{' ' + rest if rest else ''}?"


def reverse_copula_question(sentence: str) -> tuple[str, str] | None:
    """"The manager of the Kesby plant is Rafael Ondo." -> ("Rafael Ondo is the manager of which plant?", "Kesby"): the
    fact asked in the other direction, the entity inside the subject becoming the answer."""
    match = re.fullmatch(r"(?P<x>.+?) (?P<verb>is|was|are|were) (?P<y>.+)", sentence.rstrip(".!? "))
    if not match:
        return None
    x, y = match["x"], match["y"]
    if len(x.split()) > 8 or re.search(r"[\"“”;:()]", x) or x.split()[0] in NOT_SUBJECTS:
        return None
    names_y = entity_spans(y)
    if not names_y or normalise(names_y[0]) != normalise(y.removeprefix("the ").removeprefix("The ")):
        return None  # the complement is not just a name
    for entity in entity_spans(x):
        found = re.search(rf"(?:\bthe\s+|\bThe\s+)?{re.escape(entity)}(?:\s+(?P<noun>[a-z]{{3,}}))?", x)
        if not found or found.start() == 0 and not found["noun"]:
            continue
        noun = found["noun"]
        asked = x[: found.start()] + (f"which {noun}" if noun else "what") + x[found.end():]
        if asked.strip().lower().startswith(("which", "what")):
            continue
        return f"{y} {match['verb']} {lower_first(asked)}?", entity
    return None


def reverse_passive_question(sentence: str) -> tuple[str, str] | None:
    """"The Wren Building was designed by the architect Lotte Brask." -> ("What did Lotte Brask design?", "Wren Building"):
    the agent asked about, where training asks who did it."""
    match = re.fullmatch(r"(?P<x>.+?) (?:was|were) (?:\w+ly )?(?P<verb>[a-z]+ed)(?: in \d{4})? by (?:the [a-z]+ )?(?P<y>.+)", sentence.rstrip(".!? "))
    if not match or len(match["x"].split()) > 6 or match["x"].split()[0] in NOT_SUBJECTS or re.search(r"[\"“”;:(),]", match["x"]):
        return None
    agents, patients = entity_spans(match["y"]), entity_spans(match["x"])
    if not agents or not patients or normalise(agents[0]) != normalise(match["y"]) or not SUBJECT.fullmatch(match["x"]):
        return None
    lemma = verb_lemma(match["verb"])
    return (f"What did {agents[0]} {lemma}?", patients[0]) if lemma else None


@register_fact_probes("grounded_regex")
def regex_probes(doc, version: str, items: list[tuple[str, str, str]], log: Counter) -> tuple[list[dict], set]:
    """The regex baseline's held-out forms: the wh-phrase fronted, the copula and passive reversed."""
    out, asked = [], set()
    for sentence, span, kind in items:
        built = [(fronted_question(sentence, span, kind), span, "fronted")]
        for reverse in (reverse_copula_question(sentence), reverse_passive_question(sentence)):
            if reverse and reverse[1] == span:
                built.append((reverse[0], span, "reverse"))
        for question, key, form in built:
            if question and (sentence, key) not in asked and valid_question(question, key, sentence, kind) is None:
                asked.add((sentence, key))
                out.append(probe_row(question, key, "fact", form, [doc.doc_id], version))
    return out, asked
