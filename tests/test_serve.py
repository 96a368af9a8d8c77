"""`memo serve` is an OpenAI-compatible endpoint: the `openai` client asks it and gets the protocol's answer."""

import json
import os
import socket
import subprocess
import sys

import openai
import pytest

from tests.openai_stub import ScriptedOpenAI

QUESTION = "Who manages the Kesby plant?"


def executive(request: dict) -> str:
    prompt = request["messages"][-1]["content"]
    if "atomic clues" in prompt:
        return json.dumps({"clues": ["manages the Kesby plant"], "sub_questions": ["Who is the manager of the Kesby plant?"]})
    return json.dumps({"answer": "Rafael Ondo", "facts_used": [2]})


def memory(request: dict) -> str:
    question = request["messages"][-1]["content"]
    return "The manager of the Kesby plant is Rafael Ondo." if "manager" in question else "I don't know"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def served():
    """`memo serve` in its own process, with a scripted executive and a scripted memory endpoint (vLLM's place)."""
    with ScriptedOpenAI(executive) as executive_server, ScriptedOpenAI(memory) as memory_server:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if k != "MEMO_S3_ENDPOINT"}
        process = subprocess.Popen(
            [sys.executable, "-m", "memo_pipelines.apps.cli", "serve", "--port", str(port), "--mode", "single",
             "--executive", "openai", "--executive-model", "scripted", "--executive-base-url", executive_server.base_url,
             "--memory", "openai", "--memory-model", "memory", "--memory-base-url", memory_server.base_url],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        try:
            banner = process.stdout.readline()
            assert "serving model 'memo'" in banner, banner + process.stdout.read()
            yield openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0, timeout=60), memory_server
        finally:
            process.terminate()
            process.wait(timeout=10)


def test_memo_serve_answers_the_openai_client_through_the_protocol(served):
    client, memory_server = served
    assert [m.id for m in client.models.list()] == ["memo"]
    reply = client.chat.completions.create(model="memo", messages=[
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": QUESTION}])
    assert reply.choices[0].message.content.startswith("Rafael Ondo")
    memo = reply.model_extra["memo"]
    assert memo["executive_calls"] == 2 and memo["memory_calls"] == 1
    # one memory turn: the question and the executive's sub-question, each as the memory was trained to be asked
    asked = sorted(r["messages"][-1]["content"] for r in memory_server.requests)
    assert asked == ["Who is the manager of the Kesby plant?", QUESTION]
    assert all(r["messages"][0]["role"] == "system" for r in memory_server.requests)

    stream = client.chat.completions.create(model="memo", messages=[{"role": "user", "content": QUESTION}], stream=True)
    assert "".join(chunk.choices[0].delta.content or "" for chunk in stream).startswith("Rafael Ondo")


def test_memo_serve_refuses_a_request_without_a_user_message(served):
    client, _ = served
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="memo", messages=[{"role": "system", "content": "Hello"}])
