"""The LLM form asks for structured output (a JSON schema through `response_format`) where the endpoint takes it, and
repairs replies where it does not: against a scripted OpenAI-compatible endpoint that also answers malformed and
off-schema."""

import json

from memo_pipelines.corpus.snapshot import Document
from memo_pipelines.llm.backends import LLMSpec, load_chat_model
from memo_pipelines.reflections.synthesis import SynthesisConfig, synthesise_reflections
from tests.openai_stub import ScriptedOpenAI

KESBY = Document("kesby.txt", "landing/kesby.txt", "e1", 36, "sha-kesby", "The Kesby plant employs 340 people.")
ONDO = Document("ondo.txt", "landing/ondo.txt", "e2", 46, "sha-ondo", "Rafael Ondo joined Quillfeather Labs in 2018.")
PAIR = {"question": "How many people does the Kesby plant employ?", "answer": "The Kesby plant employs 340 people.", "key": "340"}
STEP_ONE = SynthesisConfig(steps=("fact_extraction",), entity_summaries=False, fabricated_negatives_per_document=0)


def synthesise(responder):
    with ScriptedOpenAI(responder) as server:
        generator = load_chat_model(LLMSpec("openai", "scripted-model", server.base_url, max_retries=0))
        rows, stats = synthesise_reflections([KESBY, ONDO], "v000001", generator, "llm_json", config=STEP_ONE)
        return rows, stats, server.requests


def test_the_schema_is_asked_for_and_malformed_or_off_schema_replies_are_asked_again_then_counted():
    def endpoint(request):
        prompt, retry = request["messages"][0]["content"], len(request["messages"]) > 1
        if "Kesby" in prompt:  # malformed first, then the schema's object
            return json.dumps({"items": [PAIR]}) if retry else 'Sure! {"items": [{"question": "How many'
        return json.dumps({"items": [{"q": "Who joined?", "a": "Rafael Ondo"}]})  # off-schema, twice

    rows, stats, requests = synthesise(endpoint)
    assert [(r["question"], r["key_answer"]) for r in rows] == [(PAIR["question"], "340")]
    assert stats.dropped["unparseable reply"] == 1  # Ondo's document: two off-schema replies, then given up
    assert len(requests) == 4
    for request in requests:
        schema = request["response_format"]["json_schema"]["schema"]
        assert request["response_format"]["type"] == "json_schema"
        assert schema["properties"]["items"]["items"]["required"] == ["question", "answer"]


def test_an_endpoint_without_structured_output_is_asked_plainly_and_its_reply_repaired():
    def endpoint(request):
        if "response_format" in request:
            return {"status": 400}  # as a server that does not know the parameter
        if "Kesby" in request["messages"][0]["content"]:
            return "Here are the pairs:\n```json\n" + json.dumps([PAIR]) + "\n```"
        return "[]"

    rows, stats, requests = synthesise(endpoint)
    assert [r["question"] for r in rows] == [PAIR["question"]]
    # refused once, then every request goes without it (Ondo's empty list is asked again once)
    assert ["response_format" in r for r in requests] == [True, False, False, False]


def test_a_local_model_replies_in_every_schema_we_send_even_when_its_budget_cuts_it_short(tiny_base):
    """In-process decoding under the schema's grammar: a random tiny model writes no JSON of itself, yet every reply
    parses and matches, rows of one batch keep their own state, and a budget too short for the model's ramble still
    ends in a closed value."""
    import jsonschema

    from memo_pipelines.llm.backends import LocalChatModel
    from memo_pipelines.protocol import ProtocolConfig
    from memo_pipelines.protocol.stages import reply_formats
    from memo_pipelines.reflections.steps import json_schema
    from memo_pipelines.reflections.text import parse_json_list

    model = LocalChatModel(tiny_base)
    conversations = [[{"role": "user", "content": "Kesby"}], [{"role": "user", "content": "Who manages the Kesby plant, and since when?"}]]
    assert all(parse_json_list(reply, ("question", "answer")) is None for reply in model.chat(conversations, max_new_tokens=48))
    formats = [*reply_formats(ProtocolConfig()).values(), json_schema(("question", "answer")), json_schema(("id", "verdict"))]
    for response_format in formats:
        for reply in model.chat(conversations, max_new_tokens=48, response_format=response_format):
            jsonschema.validate(json.loads(reply), response_format["json_schema"]["schema"])
