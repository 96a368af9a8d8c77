"""The grounded probe forms. For the parsed generator ("grounded"): every clause's facts as cleft questions ("Which
year was it that Rafael Ondo joined Quillfeather Labs?"), the phrasing family its training never uses
(reflections/clauses.py). For the regex baseline ("grounded_regex"): rules that ask a fact another way than its
training templates do (the wh-phrase fronted with do-support, the reverse direction). For both, the generator phrasing
probes in a prompt unlike training's, and questions about fabricated entities of the same shape as the corpus's own.
English morphology, closed-class words and spaCy's parse only: nothing here is fitted to one corpus."""

import re
from collections import Counter
from typing import TYPE_CHECKING

from memo_pipelines.qa import IDK, normalise, row_id
from memo_pipelines.reflections.clauses import clauses, cleft_questions
from memo_pipelines.reflections.negatives import fabricated_questions
from memo_pipelines.reflections.nlp import parse_documents
from memo_pipelines.reflections.quality import keep_passing
from memo_pipelines.reflections.text import answer_spans, entity_spans, sentences, valid_question

if TYPE_CHECKING:
    from memo_pipelines.reflections.probes import ProbeConfig


def probe_row(question: str, key_answer: str, kind: str, form: str, sources: list[str], version: str) -> dict:
    question = question.strip()
    return {"id": row_id(question, key_answer), "question": question,
            "key_answer": key_answer.strip(), "kind": kind, "form": form, "source_doc_ids": sorted(sources), "version": version}


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


PROBE_PHRASING_PROMPT = """Write a short question that a person would ask to learn the answer. Do not copy the sentence.
Fact: The Eiffel Tower, in Paris, was completed in 1889 after two years of work.
Answer: 1889
Question: When was the Eiffel Tower finished?

Fact: Marie Curie, a physicist, was born in Warsaw in 1867.
Answer: Warsaw
Question: What city is Marie Curie from?

Fact: {sentence}
Answer: {answer}
Question:"""


def cleft_probes(doc, version: str, log: Counter) -> list[dict]:
    """The parsed generator's held-out family: each clause's facts as clefts, kept when they pass the quality filters."""
    pairs = [{"question": q, "key_answer": key, "answer": clause.statement()} for clause in clauses(parse_documents([doc.text])[0])
             for q, key in cleft_questions(clause)]
    return [probe_row(p["question"], p["key_answer"], "fact", "cleft", [doc.doc_id], version) for p in keep_passing(pairs, log)]


def regex_probes(items: list[tuple[str, str, str]], doc, version: str) -> tuple[list[dict], set]:
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


def grounded_fact_probes(doc, version: str, generator, config: "ProbeConfig", log: Counter, parsed: bool = True) -> list[dict]:
    items = [(sentence, span, kind) for sentence in sentences(doc.text) for span, kind in answer_spans(sentence)]
    if parsed:
        out = cleft_probes(doc, version, log)
        asked = {(s, a) for s, a, _ in items if any(a == p["key_answer"] for p in out)}
    else:
        out, asked = regex_probes(items, doc, version)
    if config.phrase_with_generator and generator is not None and len(out) < config.facts_per_document:
        rest = [(s, a, k) for s, a, k in items if (s, a) not in asked][: 2 * config.facts_per_document]
        replies = generator.complete([PROBE_PHRASING_PROMPT.format(sentence=s, answer=a) for s, a, _ in rest], max_new_tokens=24, stop="\n",
                                     errors="none")
        for (sentence, span, kind), reply in zip(rest, replies):
            reason = valid_question(reply or "", span, sentence, kind)
            if reason is None and (sentence, span) not in asked:
                asked.add((sentence, span))
                out.append(probe_row(reply, span, "fact", "generator_phrased", [doc.doc_id], version))
            else:
                log[f"generator probe dropped: {reason or 'no reply'}"] += 1
    return out


# -- unanswerable probes: plausible entities that appear nowhere in the corpus ------------------------------------

def unanswerable_probes(training_rows: list[dict], doc, version: str, known: str, limit: int) -> list[dict]:
    """Training questions of this document with their entity replaced by a fabricated one: the same kind of question
    the memory learnt to answer, about something the corpus never names, so the right answer is "I don't know"."""
    return [probe_row(q["question"], IDK, "unanswerable", "fabricated_entity", [doc.doc_id], version) | {"entity": q["entity"]}
            for q in fabricated_questions(training_rows, doc, known, limit, f"probe-{version}")]
