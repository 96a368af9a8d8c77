"""Reflection step 1 through the generator interface: an OpenAI-compatible endpoint (scripted) and the grounded checks."""

import json

from memo_pipelines.corpus import Document
from memo_pipelines.llm import LLMSpec, OpenAIChatModel
from memo_pipelines.pipeline import PrefixedCache
from memo_pipelines.reflections import answer_spans, synthesise_reflections, valid_question, wh_question
from tests.openai_stub import ScriptedOpenAI

DOC = Document("plant_kesby.txt", "landing/plant_kesby.txt", "e1", 80, "sha-kesby",
               "The Kesby plant employs 340 people.\nThe manager of the Kesby plant is Rafael Ondo.")
OTHER = Document("bad.txt", "landing/bad.txt", "e2", 10, "sha-bad", "Petrel was launched in March 2023.")


def endpoint_reply(request: dict) -> str:
    prompt = request["messages"][-1]["content"]
    if "Kesby" in prompt:
        return "Here you go:\n```json\n" + json.dumps([
            {"question": "Who manages the Kesby plant?", "answer": "Rafael Ondo manages the Kesby plant."},
            {"question": "How many people does the Kesby plant employ?", "answer": "340 people."},
            {"question": "Where is the Eiffel Tower?", "answer": "The Eiffel Tower stands in Paris, France."},
        ]) + "\n```"
    return "I cannot produce JSON today."


def generator(server: ScriptedOpenAI) -> OpenAIChatModel:
    return OpenAIChatModel(LLMSpec(backend="openai", model="scripted-model", base_url=server.base_url, max_retries=0))


def test_endpoint_pairs_keep_provenance_and_drop_ungrounded_or_malformed_replies(store):
    with ScriptedOpenAI(endpoint_reply) as server:
        rows, stats = synthesise_reflections([DOC, OTHER], "v000001", generator(server), "llm_json", PrefixedCache(store, "cache/"))
    extracted = [r for r in rows if r["step"] == "fact_extraction"]
    assert {r["question"] for r in extracted} == {"Who manages the Kesby plant?", "How many people does the Kesby plant employ?"}
    assert all(r["source_doc_ids"] == ["plant_kesby.txt"] and r["version"] == "v000001" for r in extracted)
    assert stats.dropped["answer not grounded in the chunk"] == 1  # the Eiffel Tower is not in the document
    assert stats.dropped["unparseable reply"] == 1  # the second document's reply had no JSON


def test_a_second_run_is_served_from_the_cache(store):
    cache = PrefixedCache(store, "cache/")
    with ScriptedOpenAI(endpoint_reply) as server:
        first, _ = synthesise_reflections([DOC], "v000001", generator(server), "llm_json", cache)
        calls_after_first = len(server.requests)
        second, stats = synthesise_reflections([DOC], "v000001", generator(server), "llm_json", cache)
        assert len(server.requests) == calls_after_first == 1
    assert stats.cache_hits == 1 and stats.generator_calls == 0
    assert first == second


def test_grounded_strategy_keeps_only_questions_that_ask_for_their_span(store):
    phrasings = {"340 people": "How many people does the Kesby plant employ?", "Rafael Ondo": "What is the answer to the question?"}

    def phrase(request: dict) -> str:
        answer = request["messages"][-1]["content"].rsplit("Answer: ", 1)[1].split("\n")[0]
        return phrasings.get(answer, "In 1999?")

    with ScriptedOpenAI(phrase) as server:
        rows, stats = synthesise_reflections([DOC], "v000001", generator(server), "grounded")
    phrased = {r["question"] for r in rows if r["method"] == "llm_phrased"}
    assert phrased == {"How many people does the Kesby plant employ?"}
    assert stats.dropped["question about a question"] == 1
    # every grounded answer is the sentence that states the fact, and its key answer is a span of it
    assert all(r["key_answer"] in r["answer"] for r in rows if r["step"] == "fact_extraction")
    assert "Who is the manager of the Kesby plant?" not in phrased
    templates = {r["question"] for r in rows if r["method"] == "wh_template"}
    assert "The manager of the Kesby plant is whom?" in templates


def test_span_question_checks():
    sentence = "Rafael Ondo joined Quillfeather Labs in 2018 from Harrowgate Motors."
    assert ("2018", "year") in answer_spans(sentence)
    assert valid_question("Who is the chief executive of Quillfeather Labs?", "2018", sentence, "year") is not None
    assert valid_question("In what year did Rafael Ondo join Quillfeather Labs?", "2018", sentence, "year") is None
    assert valid_question("When did Rafael Ondo join Quillfeather Labs in 2018?", "2018", sentence, "year") == "question contains its answer"
    assert wh_question(sentence, "2018", "year") == "Rafael Ondo joined Quillfeather Labs in what year from Harrowgate Motors?"
