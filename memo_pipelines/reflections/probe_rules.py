"""The grounded probe forms. Each rule-built step form registers the fact probes it writes first (FACT_PROBES): for
the parsed generator ("grounded"), every clause's facts as cleft questions ("Which year was it that Rafael Ondo joined
Quillfeather Labs?"), the phrasing family its training never uses (reflections/clauses.py). Then, for every form, the
generator phrasing probes in a prompt unlike training's, and questions about fabricated entities of the same shape as
the corpus's own. English morphology, closed-class words and spaCy's parse only: nothing here is fitted to one corpus."""

from collections import Counter
from typing import TYPE_CHECKING, Callable

from memo_pipelines.qa import IDK, row_id
from memo_pipelines.reflections.clauses import clauses, cleft_questions
from memo_pipelines.reflections.negatives import fabricated_questions
from memo_pipelines.reflections.nlp import parse_documents
from memo_pipelines.reflections.quality import keep_passing
from memo_pipelines.reflections.text import answer_spans, sentences, valid_question

if TYPE_CHECKING:
    from memo_pipelines.reflections.probes import ProbeConfig


def probe_row(question: str, key_answer: str, kind: str, form: str, sources: list[str], version: str) -> dict:
    question = question.strip()
    return {"id": row_id(question, key_answer), "question": question,
            "key_answer": key_answer.strip(), "kind": kind, "form": form, "source_doc_ids": sorted(sources), "version": version}


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


# a step form's own fact probes: (doc, version, [(sentence, answer span, kind)], log) -> (probes, (sentence, span) asked)
FactProbes = Callable[..., tuple[list[dict], set]]
FACT_PROBES: dict[str, FactProbes] = {}


def register_fact_probes(form: str):
    def register(probes: FactProbes) -> FactProbes:
        FACT_PROBES[form] = probes
        return probes
    return register


@register_fact_probes("grounded")
def cleft_probes(doc, version: str, items: list[tuple[str, str, str]], log: Counter) -> tuple[list[dict], set]:
    """The parsed generator's held-out family: each clause's facts as clefts, kept when they pass the quality filters."""
    pairs = [{"question": q, "key_answer": key, "answer": clause.statement()} for clause in clauses(parse_documents([doc.text])[0])
             for q, key in cleft_questions(clause)]
    out = [probe_row(p["question"], p["key_answer"], "fact", "cleft", [doc.doc_id], version) for p in keep_passing(pairs, log)]
    return out, {(s, a) for s, a, _ in items if any(a == p["key_answer"] for p in out)}


def grounded_fact_probes(doc, version: str, generator, config: "ProbeConfig", log: Counter, form: str = "grounded") -> list[dict]:
    items = [(sentence, span, kind) for sentence in sentences(doc.text) for span, kind in answer_spans(sentence)]
    out, asked = FACT_PROBES[form](doc, version, items, log)
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
