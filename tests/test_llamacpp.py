"""The OpenAI-compatible path against a real server: llama.cpp (xllamacpp) serving the embedded SmolLM2 GGUF on
loopback with an API key. The scripted stub (tests/openai_stub.py) stays for replies a real server never gives."""

import json
import threading
import time

import jsonschema
import openai
import pytest

from memo_pipelines.llm.backends import LLMSpec, OpenAIChatModel
from memo_pipelines.llm.llamacpp import LlamaCppServer
from memo_pipelines.protocol import ProtocolConfig
from memo_pipelines.protocol.stages import reply_formats
from memo_pipelines.reflections.steps import Generator, json_schema
from tests.test_ask import ask

API_KEY = "memo-test-key"
QUESTION = "Where was the manager of the Kesby plant born?"
LONG_ASK = [{"role": "user", "content": "Write a long story about a battery factory in a small town."}]


@pytest.fixture(scope="module")
def llamacpp(tmp_path_factory):
    with LlamaCppServer(api_key=API_KEY, log=tmp_path_factory.mktemp("llamacpp") / "server.log") as server:
        yield server


@pytest.fixture
def keyed(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)


def model_at(server: LlamaCppServer, **spec) -> OpenAIChatModel:
    return OpenAIChatModel(LLMSpec("openai", server.alias, server.base_url, **{"max_retries": 0, **spec}))


def test_the_key_is_required_and_a_streamed_reply_is_the_plain_reply(llamacpp, keyed, monkeypatch):
    question = [[{"role": "user", "content": "What is the capital of France?"}]]
    plain, streamed = model_at(llamacpp), model_at(llamacpp, stream=True)
    assert plain.chat(question, max_new_tokens=16) == streamed.chat(question, max_new_tokens=16)
    assert streamed.usage["completion_tokens"] > 0 and streamed.usage["requests"] == 1  # usage from the last chunk
    monkeypatch.setenv("OPENAI_API_KEY", "not-the-key")
    with pytest.raises(openai.AuthenticationError):
        model_at(llamacpp).chat(question, max_new_tokens=4)


def test_replies_asked_with_a_schema_parse_and_match_it(llamacpp, keyed):
    executive = model_at(llamacpp)
    formats = reply_formats(ProtocolConfig(max_sub_questions=2))
    prompt = [[{"role": "user", "content": f"Plan how to answer: {QUESTION} Reply in JSON."}]]
    # the server's own grammar keeps to the schema; unlike the in-process decoder it does not close a reply its budget
    # cuts (the protocol's repair closes those), so the budget here fits these two schemas' longest replies
    for stage in ("gather", "synthesise"):
        reply = executive.chat(prompt, max_new_tokens=320, response_format=formats[stage])[0]
        jsonschema.validate(json.loads(reply), formats[stage]["json_schema"]["schema"])
    # the generator's steps: a list of pairs, read by the same parser that repairs a schema-less endpoint's replies
    log = {}
    pairs = Generator(executive, json_retries=0).ask_json(["List two facts about Paris as question-answer pairs."], log,
                                                          max_new_tokens=96)[0]
    assert pairs is not None and not log
    jsonschema.validate({"items": pairs}, json_schema(("question", "answer"))["json_schema"]["schema"])


def test_memo_ask_runs_the_protocol_with_executive_and_memory_on_a_real_server(llamacpp, keyed, capsys, monkeypatch, tmp_path):
    monkeypatch.delenv("MEMO_S3_ENDPOINT", raising=False)  # no registry: the memory is the served model
    monkeypatch.setenv("MEMO_WORK_DIR", str(tmp_path))
    out = ask(capsys, "Who is the manager of the Kesby plant?", "--json", "--mode", "staged",
              "--executive", "openai", "--executive-model", llamacpp.alias, "--executive-base-url", llamacpp.base_url,
              "--memory", "openai", "--memory-model", llamacpp.alias, "--memory-base-url", llamacpp.base_url)
    result = json.loads(out)
    assert not [n for n in result["notes"] if "no usable JSON" in n or "no decomposition" in n or "failed" in n], result["notes"]
    assert result["trace"][0]["stage"] == "decompose" and result["executive_calls"] >= 3 and result["memory_calls"] >= 2
    assert result["answer"]


def test_a_plain_reply_times_out_while_a_streamed_one_keeps_going(llamacpp, keyed):
    # llama.cpp sends nothing until a plain reply is done; a streamed reply sends each token as it comes
    with pytest.raises(openai.APITimeoutError):
        model_at(llamacpp, timeout_s=0.3).chat([LONG_ASK], max_new_tokens=200)
    streamed = model_at(llamacpp, timeout_s=5.0, stream=True)
    assert len(streamed.chat([LONG_ASK], max_new_tokens=64)[0]) > 100


def long_streamed_request(model: OpenAIChatModel, errors: str) -> dict:
    """Start a long streamed request in a thread; its outcome lands in the returned dict."""
    outcome: dict = {}

    def run():
        try:
            outcome["reply"] = model.chat([LONG_ASK], max_new_tokens=300, errors=errors)[0]
        except Exception as error:  # noqa: BLE001 - inspected by the test
            outcome["error"] = error

    outcome["thread"] = threading.Thread(target=run, daemon=True)
    outcome["thread"].start()
    return outcome


def test_a_server_killed_mid_reply_is_asked_again_once_back_or_fails_clearly(tmp_path, keyed):
    server = LlamaCppServer(api_key=API_KEY, log=tmp_path / "server.log").start()
    try:
        # killed mid-stream, then back on the same port: the client asks again and gets a whole reply
        model = model_at(server, stream=True, max_retries=6, timeout_s=10.0)  # backoff of 23 s in all
        outcome = long_streamed_request(model, errors="raise")
        time.sleep(2.0)
        server.kill()
        server.start()
        outcome["thread"].join(120)
        assert "error" not in outcome, outcome.get("error")
        assert outcome["reply"] and model.usage["broken_streams"] >= 1
        # killed for good: a clear error, or None counted as a failed request when the caller asked for that
        model = model_at(server, stream=True, max_retries=1, timeout_s=10.0)
        outcome = long_streamed_request(model, errors="raise")
        time.sleep(2.0)
        server.kill()
        outcome["thread"].join(60)
        assert isinstance(outcome["error"], openai.APIConnectionError) and "asked 2 times" in str(outcome["error"])
        quiet = model_at(server, max_retries=0, timeout_s=5.0)
        assert quiet.chat([LONG_ASK], max_new_tokens=8, errors="none") == [None] and quiet.usage["failed_requests"] == 1
    finally:
        server.stop()
