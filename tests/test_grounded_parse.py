"""The grounded generator on spaCy's parse: questions people would ask, short answers that state the key answer,
pronouns resolved, drop reasons counted, and the held-out cleft family kept out of training; on the sample corpus, on
HotpotQA passages the rules were never written for, and on the issue's own bad examples."""

import hashlib
import json
from pathlib import Path

import pytest

from memo_pipelines.corpus.snapshot import Document
from memo_pipelines.qa import recalled
from memo_pipelines.reflections.probes import ProbeConfig, write_probes
from memo_pipelines.llm.backends import LLMSpec, load_chat_model
from memo_pipelines.reflections.clauses import clauses, cleft_questions
from memo_pipelines.reflections.nlp import parse_documents
from memo_pipelines.reflections.quality import CUT_TITLE, FRAGMENT_KEY, HOLE, NO_SUBJECT, PRONOUN, quality_problems
from memo_pipelines.reflections.synthesis import synthesise_reflections
from tests.conftest import SAMPLE_DIR
from tests.openai_stub import ScriptedOpenAI

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def document(doc_id: str, text: str) -> Document:
    return Document(doc_id, f"landing/{doc_id}", "etag", len(text), hashlib.sha256(text.encode()).hexdigest(), text)


def reflect(documents):
    """The grounded form with a scripted endpoint as its generator, which it must not need."""
    with ScriptedOpenAI(lambda request: "Who knows?") as server:
        rows, stats = synthesise_reflections(documents, "v000001", load_chat_model(LLMSpec("openai", "scripted-model", server.base_url)), "grounded")
        assert server.requests == []  # the parse phrases every question
    return rows, stats


def hotpot_documents(limit: int) -> list[Document]:
    path = SHARED_DATA / "hotpotqa" / "hotpotqa_train_corpus.json"
    if not path.exists():
        pytest.skip(f"public data not found at {SHARED_DATA}")
    corpus = json.loads(path.read_text())
    return [document(f"{i:03d}.txt", "".join(corpus[title])) for i, title in enumerate(sorted(corpus)[:limit])]


def test_each_fact_is_asked_several_ways_and_answered_by_one_sentence_that_states_it():
    ondo = document("ondo.txt", "Rafael Ondo joined Quillfeather Labs in 2018. He studied chemistry in Darrow.")
    kesby = document("kesby.txt", "The Kesby plant employs 340 people.")
    rows, stats = reflect([ondo, kesby])
    asked = {r["question"]: r for r in rows if r["step"] not in ("unanswerable", "document")}  # the clause rules' rows
    assert asked["When did Rafael Ondo join Quillfeather Labs?"]["key_answer"] == "2018"
    assert asked["Who joined Quillfeather Labs in 2018?"]["key_answer"] == "Rafael Ondo"  # the reverse lookup
    assert asked["How many people does the Kesby plant employ?"]["answer"] == "The Kesby plant employs 340 people."
    # "He" is resolved to the nearest person: the fact stands alone
    assert asked["What did Rafael Ondo study in Darrow?"]["answer"] == "Rafael Ondo studied chemistry in Darrow."
    assert "Rafael Ondo studied chemistry in Darrow." in asked["What is known about Rafael Ondo?"]["answer"]
    for row in asked.values():
        assert recalled(row["answer"], row["key_answer"]), row
        assert " he " not in f" {row['question'].lower()} " and "was it that" not in row["question"]  # the clefts are held out
    assert stats.log["clauses"] == 3


def test_encyclopaedic_sentence_shapes_give_short_key_answers():
    """Shapes common in reference text: a complement described by coordinated participles that share one agent, a
    copula relating the subject to a named entity, a title in quotes; a span cut inside brackets is dropped."""
    text = ('Harrow Lane is a 1984 British drama film written and directed by Imogen Vantry. '
            'Copperfield Rally is a racing game developed by Northgate Studio and published by Bellweather Interactive. '
            'Tomas Ardel was the father of painter Lise Ardel. '
            'The "Quarry Song" is a song written by Oren Pask. '
            'Mira Holt is a former member of the duo f(x) and a solo singer. '
            'Corvane Mills opened its third factory, the Ashby plant, in 2011. '
            'The Ashby plant builds Petrel engines.')
    rows, stats = reflect([document("shapes.txt", text)])
    # the clause rules' questions (the whole-document rows quote each sentence whole: test_document_rows.py)
    asked = {r["question"]: r["key_answer"] for r in rows if r["step"] not in ("unanswerable", "document")}

    def keys_of(*words):  # key answers of the questions with all these words ("who" or "what" follows the NER label)
        return {k for q, k in asked.items() if all(w in q for w in words)}

    assert "Imogen Vantry" in keys_of("directed", "Harrow Lane")  # the second participle's own agent
    assert "Imogen Vantry" in keys_of("written", "Harrow Lane")  # and the first's, shared
    assert "Bellweather Interactive" in keys_of("published", "Copperfield Rally")
    assert asked["Who was Tomas Ardel the father of?"] == "painter Lise Ardel"
    assert "Oren Pask" in keys_of("is the Quarry Song written")  # the title without a stray quote
    assert not any("f(x" in q or "f(x" in k for q, k in asked.items())  # nothing cut inside the brackets
    assert all(q.count('"') % 2 == 0 for q in asked)
    # the name in apposition stands for an object described with a possessive pronoun
    assert "2011" in keys_of("When", "Ashby plant")
    assert "Ashby plant" in keys_of("open", "in 2011")
    # a phrase is an entity's kind only when its head is in the name: Petrel engines are not an organisation
    held_out = [q for c in clauses(parse_documents([text])[0]) for q, _ in cleft_questions(c)]
    assert "What was it that the Ashby plant builds?" in held_out
    assert not any("organisation" in q and "Petrel" in q for q in held_out)


def test_asides_descriptions_and_the_short_question_a_person_would_ask():
    """A bracketed aside does not hide its sentence and its dates become facts; "the magazine" is the magazine named
    before; a fact is also asked without its other modifiers, as a person would ask it."""
    text = ("# Orla Fenwick\n\nOrla Fenwick (born 4 May 1961) is a Welsh harpist. She grew up in Tenby.\n\n"
            "The Brackwater Review (BR) is a quarterly magazine founded in Cardiff in 1987. "
            "The magazine was sold to Halden Press in 2004. It closed in 2019.")
    rows, _ = reflect([document("fenwick.txt", text)])
    asked = {r["question"]: r for r in rows if r["step"] not in ("unanswerable", "document")}  # the clause rules' rows
    assert asked["When was Orla Fenwick born?"]["key_answer"] == "4 May 1961"
    assert asked["What is Orla Fenwick?"]["key_answer"] == "Welsh harpist"  # the aside no longer splits subject from verb
    assert asked["Where did Orla Fenwick grow up?"]["key_answer"] == "Tenby"
    assert asked["When was the Brackwater Review sold to Halden Press?"]["key_answer"] == "2004"
    assert asked["When was the Brackwater Review sold?"]["key_answer"] == "2004"  # the short form
    # "founded" describes the complement of "is": the question keeps the sentence's tense
    assert {r["key_answer"] for q, r in asked.items() if q.startswith("Where is the Brackwater Review founded")} == {"Cardiff"}
    assert asked["When is the Brackwater Review founded?"]["key_answer"] == "1987"
    assert asked["When did the Brackwater Review close?"]["key_answer"] == "2019"
    # a date opening the sentence is asked like one after the verb; a count keeps its whole noun; "a population of N"
    tern, _ = reflect([document("tern.txt", "In 2022 the Tern cell won the Corvel Prize. The Tern cell stores 180 watt-hours per kilogram. "
                                            "At the 2021 census, Kesby had a population of 6,960.")])
    tern_keys = {r["question"]: r["key_answer"] for r in tern if r["step"] not in ("unanswerable", "document")}
    assert "2022" in {k for q, k in tern_keys.items() if q.startswith("When did") and "win the Corvel Prize" in q}
    assert "180" in {k for q, k in tern_keys.items() if q.startswith("How many watt-hours does")}
    assert tern_keys["What population did Kesby have?"] == "6,960"  # a quantity named by its noun
    for question, row in asked.items():
        assert "(" not in question and "born 4 May" not in question and "the magazine" not in question.lower(), question
        assert recalled(row["answer"], row["key_answer"]), row


def test_the_issues_bad_reflections_fail_the_quality_filters_with_their_reason():
    bad = [
        ("What, John tails a local drug dealer to a drug lord, then robs him?", "Instead", FRAGMENT_KEY),
        ("Thor lands in New Mexico, where astrophysicist what?", "Dr", CUT_TITLE),
        ("What tries to keep her house tidy?", "She", FRAGMENT_KEY),
        ("Thor lands in New Mexico, where astrophysicist what?", "Jane Foster", HOLE),
        ("What does she grow in New Mexico?", "corn", PRONOUN),
        ("The manager of the Kesby plant is whom?", "Rafael Ondo", HOLE),
    ]
    problems = quality_problems([{"question": q, "key_answer": k, "answer": ""} for q, k, _ in bad])
    assert problems == [reason for _, _, reason in bad]
    good = [{"question": "When did Rafael Ondo join Quillfeather Labs?", "key_answer": "2018", "answer": "Rafael Ondo joined Quillfeather Labs in 2018."},
            # the subject shares a word with the answer and is still named
            {"question": "In which town is the Lorne plant?", "key_answer": "port town of Lorne", "answer": "The Lorne plant is in the port town of Lorne."}]
    assert quality_problems(good) == [None, None]
    assert quality_problems([{"question": "What did Kesby open?", "key_answer": "Kesby plant", "answer": "It opened the Kesby plant."}]) == [NO_SUBJECT]


def test_on_encyclopaedic_text_every_question_passes_the_filters_and_drops_are_counted():
    documents = hotpot_documents(20)
    rows, stats = reflect(documents)
    facts = [r for r in rows if r["step"] in ("fact_extraction", "entity_surfacing")]
    assert len(facts) >= 40, stats.to_json()
    assert quality_problems(facts) == [None] * len(facts)
    text = {d.doc_id: d.text for d in documents}
    for row in facts:
        assert recalled(text[row["source_doc_ids"][0]], row["key_answer"]), row  # the key answer is a span of its passage
        assert len(row["answer"].split()) <= 40, row  # one short sentence, not a paragraph
    dropped = stats.to_json()["dropped_by_reason"]
    assert dropped.get("question names no subject", 0) > 0  # what the filters removed is reported, by reason
    assert sum(r["key_answer"].lower() in ("he", "she", "it", "they", "dr", "the") for r in facts) == 0


def test_held_out_probes_are_clefts_no_training_question_resembles():
    documents = [document(p.name, p.read_text()) for p in sorted(SAMPLE_DIR.glob("*.txt"))] + hotpot_documents(10)
    rows, _ = reflect(documents)
    probes, report = write_probes(documents, rows, [], "v000001", None, "grounded", ProbeConfig(phrase_with_generator=False))
    clefts = [p for p in probes if p["form"] == "cleft"]
    assert len(clefts) >= 10, report
    trained = {r["question"] for r in rows}
    assert all(p["question"] not in trained and p["training_overlap"] < report["contamination"]["threshold"] for p in clefts)
    assert not any("was it that" in q or q.startswith(("Who is the person that", "What is the number of")) for q in trained)
