"""Held-out probes: phrased unlike every training question, answered by their own documents, about entities no
document names when they must be declined; on the sample corpus and on public text the rules were not written for."""

import hashlib
import json
from pathlib import Path

import pytest

from benchmarks.grounded_regex import fronted_question, reverse_copula_question
from memo_pipelines.corpus.snapshot import Document
from memo_pipelines.reflections.probes import ProbeConfig, TrainingQuestions, write_probes
from memo_pipelines.evaluation.user_evals import load_user_evals, score_user_evals
from memo_pipelines.llm.backends import LLMSpec, LocalChatModel, load_chat_model
from memo_pipelines.reflections.synthesis import SynthesisConfig, synthesise_reflections
from memo_pipelines.reflections.text import content_tokens
from memo_pipelines.qa import normalise
from tests.conftest import SAMPLE_DIR
from tests.openai_stub import ScriptedOpenAI

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def document(doc_id: str, text: str) -> Document:
    return Document(doc_id, f"landing/{doc_id}", "etag", len(text), hashlib.sha256(text.encode()).hexdigest(), text)


def sample_documents() -> list[Document]:
    return [document(p.name, p.read_text()) for p in sorted(SAMPLE_DIR.glob("*.txt")) + sorted(SAMPLE_DIR.glob("*.md"))]


def public_documents(limit: int = 12) -> list[Document]:
    if not (SHARED_DATA / "hotpotqa").exists():
        pytest.skip(f"public data not found at {SHARED_DATA}")
    corpus = json.loads((SHARED_DATA / "hotpotqa" / "hotpotqa_train_corpus.json").read_text())
    titles = sorted(corpus)[:limit]
    return [document(f"{i:03d}.txt", "".join(corpus[t]) if isinstance(corpus[t], list) else str(corpus[t])) for i, t in enumerate(titles)]


def check_probes(documents, tiny_base):
    # the rule forms only (a random tiny model phrases nothing usable, and phrasing is slow): the generator's phrasing
    # goes through the same checks and runs in the pipeline tests
    generator = LocalChatModel(tiny_base)
    rows, _ = synthesise_reflections(documents, "v000001", generator, "grounded", config=SynthesisConfig(phrased_per_sentence=0))
    probes, report = write_probes(documents, rows, [], "v000001", None, "grounded", ProbeConfig(phrase_with_generator=False))
    by_id = {d.doc_id: d for d in documents}
    facts = [p for p in probes if p["kind"] == "fact"]
    unanswerable = [p for p in probes if p["kind"] == "unanswerable"]
    training = TrainingQuestions([r["question"] for r in rows])
    trained = {normalise(r["question"]) for r in rows}
    corpus = normalise(" ".join(d.text for d in documents))
    for probe in facts:
        assert normalise(probe["question"]) not in trained, probe
        assert training.nearest(probe["question"]) < report["contamination"]["threshold"], probe
        assert content_tokens(probe["key_answer"]) <= content_tokens(by_id[probe["source_doc_ids"][0]].text), probe
    for probe in unanswerable:
        assert normalise(probe["entity"]) not in corpus, probe
        assert probe["entity"] in probe["question"]
    return facts, unanswerable, report


def test_probes_of_the_sample_corpus_are_held_out_grounded_and_unanswerable_where_they_must_be(tiny_base):
    facts, unanswerable, report = check_probes(sample_documents(), tiny_base)
    assert len(facts) >= 5 and len(unanswerable) >= 5, report
    assert report["contamination"]["max_overlap"] < report["contamination"]["threshold"]
    questions = {p["question"] for p in facts}
    # the fact asked another way than training asks it ("How many people does the Kesby plant employ?")
    assert "What is the number of people that the Kesby plant employs?" in questions


def test_probes_hold_on_public_text_the_rules_were_not_written_for(tiny_base):
    # the rule forms rarely apply to encyclopaedic sentences (README: probe yield), but what they write holds
    facts, unanswerable, report = check_probes(public_documents(40), tiny_base)
    assert facts and len(unanswerable) >= 20, report


def test_training_negatives_ask_about_names_no_document_has_and_probes_do_not_repeat_them(tiny_base):
    documents = sample_documents()
    rows, _ = synthesise_reflections(documents, "v000001", LocalChatModel(tiny_base), "grounded", config=SynthesisConfig(phrased_per_sentence=0))
    negatives = [r for r in rows if r["method"] == "fabricated_entity"]
    corpus = normalise(" ".join(d.text for d in documents))
    assert len(negatives) >= len(documents)  # up to two a document
    assert all(r["answer"] == "I don't know" and r["step"] == "unanswerable" for r in negatives)
    trained_questions = {r["question"] for r in rows}
    probes, report = write_probes(documents, rows, [], "v000001", None, "grounded", ProbeConfig(phrase_with_generator=False))
    for probe in (p for p in probes if p["kind"] == "unanswerable"):
        assert probe["question"] not in trained_questions
        assert normalise(probe["entity"]) not in corpus and probe["entity"] not in " ".join(trained_questions)


def test_rule_forms_ask_the_fact_another_way():
    assert fronted_question("The Kesby plant employs 340 people.", "340 people", "quantity") == "How many people does the Kesby plant employ?"
    assert fronted_question("Rafael Ondo joined Quillfeather Labs in 2018.", "2018", "year") == "When did Rafael Ondo join Quillfeather Labs?"
    assert reverse_copula_question("The manager of the Kesby plant is Rafael Ondo.") == ("Rafael Ondo is the manager of which plant?", "Kesby")
    # a subordinate clause or a pronoun subject does not invert safely by rule
    assert fronted_question("However, Strauss died in 1899.", "1899", "year") is None
    assert fronted_question("It rises to the northeast of West Nicholson.", "West Nicholson", "name") is None


def test_the_llm_form_keeps_grounded_facts_and_entities_the_corpus_never_names():
    doc = document("plant.txt", "The Kesby plant employs 340 people. The manager of the Kesby plant is Rafael Ondo.")
    reply = json.dumps([
        {"kind": "fact", "question": "What is the headcount at the Kesby plant?", "key": "340"},
        {"kind": "fact", "question": "Who is the chief engineer of the Kesby plant?", "key": "Mira Solt"},  # not in the document
        {"kind": "unanswerable", "question": "Who manages the Dorrow plant?", "entity": "Dorrow"},
        {"kind": "unanswerable", "question": "Where was Rafael Ondo born?", "entity": "Rafael Ondo"},  # the corpus names him
    ])
    with ScriptedOpenAI(lambda request: "Here you go:\n```json\n" + reply + "\n```") as server:
        generator = load_chat_model(LLMSpec("openai", "scripted-model", server.base_url))
        rows = [{"id": "r1", "question": "The Kesby plant employs how many people?", "answer": "The Kesby plant employs 340 people.",
                 "key_answer": "340 people", "source_doc_ids": ["plant.txt"], "step": "fact_extraction"}]
        probes, report = write_probes([doc], rows, [], "v000001", generator, "llm_json")
        prompt = server.requests[0]["messages"][0]["content"]
    assert "The Kesby plant employs how many people?" in prompt  # the training questions it must not reuse
    assert [(p["kind"], p["question"]) for p in probes] == [("fact", "What is the headcount at the Kesby plant?"),
                                                            ("unanswerable", "Who manages the Dorrow plant?")]
    assert report["dropped_by_reason"] == {"fact probe key not grounded or in its question": 1, "unanswerable probe names a known or no entity": 1}


def test_a_users_evaluation_set_is_scored_closed_book_and_through_the_protocol(store):
    from memo_pipelines.protocol import Protocol, ProtocolConfig

    store.put_bytes("evals/support.jsonl", b'{"question": "Who manages the Kesby plant?", "answer": "Rafael Ondo"}\n'
                                           b'{"question": "How many people work at Kesby?", "answer": ["340", "340 people"]}\n')
    store.put_bytes("evals/broken.jsonl", b'{"question": "no answer here"}\n')
    sets, problems = load_user_evals(store, limit=100)
    assert list(sets) == ["support.jsonl"] and "line 1" in problems["broken.jsonl"]

    def executive_reply(request):
        prompt = request["messages"][-1]["content"]
        answer = "340 people work there." if "work at Kesby" in prompt else "Rafael Ondo"
        return json.dumps({"clues": ["Kesby plant"], "sub_questions": ["Who manages the Kesby plant?"], "answer": answer, "facts_used": [1]})

    # remote memory and executive, scripted: the memory knows the manager only; the executive's synthesis gets both
    with ScriptedOpenAI(lambda request: "Rafael Ondo manages the Kesby plant.") as memory_server, ScriptedOpenAI(executive_reply) as executive_server:
        memory = load_chat_model(LLMSpec("openai", "scripted-model", memory_server.base_url))
        executive = load_chat_model(LLMSpec("openai", "scripted-model", executive_server.base_url))
        scores = score_user_evals(sets, memory, lambda m: Protocol(executive, m, ProtocolConfig(mode="single")))
        assert executive_server.requests  # the protocol path really asked the executive
    figures = scores["support.jsonl"]
    assert figures["closed_book"]["n"] == 2 and figures["closed_book"]["recall"] == 0.5
    assert figures["protocol"]["n"] == 2 and figures["protocol"]["recall"] == 1.0
