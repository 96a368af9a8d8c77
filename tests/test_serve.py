"""`memo serve` is an OpenAI-compatible endpoint: the `openai` client asks it and gets the protocol's answer; it follows
promotions and rollbacks without a restart, answers concurrent clients with shared memory batches, turns a full queue
away with 429, streams progress, counts real tokens, and answers every error with an OpenAI-style body."""

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import openai
import pytest

from memo_pipelines.storage.objectstore import ObjectStore, make_s3_client
from memo_pipelines.storage.registry import ModelRegistry
from tests.conftest import CREDENTIALS
from tests.openai_stub import ScriptedOpenAI, _count_tokens
from tests.test_follow import ANSWER_A, ANSWER_B, register_two, two_memories  # noqa: F401 (a fixture)

QUESTION = "Who manages the Kesby plant?"
ROOT = Path(__file__).resolve().parents[1]


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


def start_serve(args: list[str], env: dict) -> tuple[subprocess.Popen, int, str]:
    """`memo serve` in its own process on a free loopback port: (process, port, what it printed up to its banner)."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "memo_pipelines.apps.cli", "serve", "--port", str(port), *args], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**env, "OMP_NUM_THREADS": "1"})
    printed = []
    for line in process.stdout:
        printed.append(line)
        if line.startswith("serving model"):
            threading.Thread(target=lambda: [None for _ in process.stdout], daemon=True).start()  # keep the pipe drained
            return process, port, "".join(printed)
    process.wait(timeout=10)
    raise AssertionError("memo serve exited before serving:\n" + "".join(printed))


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    process.wait(timeout=20)


def client(port: int, **options) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", **{"max_retries": 0, "timeout": 60, **options})


def get_json(port: int, path: str) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as reply:
        return json.loads(reply.read())


def wait_for(condition, timeout_s: float = 60, what: str = "condition"):
    ends = time.monotonic() + timeout_s
    while time.monotonic() < ends:
        if value := condition():
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def served():
    """`memo serve` with a scripted executive and a scripted memory endpoint (vLLM's place)."""
    with ScriptedOpenAI(executive) as executive_server, ScriptedOpenAI(memory) as memory_server:
        env = {k: v for k, v in os.environ.items() if k != "MEMO_S3_ENDPOINT"}
        process, port, _ = start_serve(["--mode", "single", "--executive", "openai", "--executive-model", "scripted",
                                        "--executive-base-url", executive_server.base_url, "--memory", "openai", "--memory-model", "memory",
                                        "--memory-base-url", memory_server.base_url], env)
        try:
            yield client(port), memory_server
        finally:
            stop(process)


def test_memo_serve_answers_the_openai_client_through_the_protocol(served):
    openai_client, memory_server = served
    assert [m.id for m in openai_client.models.list()] == ["memo"]
    reply = openai_client.chat.completions.create(model="memo", messages=[
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": QUESTION}])
    assert reply.choices[0].message.content.startswith("Rafael Ondo")
    memo = reply.model_extra["memo"]
    assert memo["executive_calls"] == 2 and memo["memory_calls"] == 1
    # one memory turn: the question and the executive's sub-question, each as the memory was trained to be asked
    asked = sorted(r["messages"][-1]["content"] for r in memory_server.requests)
    assert asked == ["Who is the manager of the Kesby plant?", QUESTION]
    assert all(r["messages"][0]["role"] == "system" for r in memory_server.requests)
    # the scripted endpoints count whitespace tokens: the memory's part of usage is theirs, summed
    memory_tokens = sum(_count_tokens(m["content"]) for r in memory_server.requests for m in r["messages"])
    assert memo["usage"]["memory"]["prompt_tokens"] == memory_tokens and reply.usage.total_tokens > memory_tokens


def test_memo_serve_refuses_a_request_without_a_user_message(served):
    openai_client, _ = served
    with pytest.raises(openai.BadRequestError, match="no user message"):
        openai_client.chat.completions.create(model="memo", messages=[{"role": "system", "content": "Hello"}])


class GatedExecutive:
    """A scripted executive: questions that start with HOLD wait at decomposition until released; synthesis answers
    with the memory's first fact, waiting first for `synthesis_waits_for` when a test sets it."""

    def __init__(self):
        self.release = threading.Event()
        self.synthesis_waits_for: threading.Event | None = None
        self.waited_and_saw: list[bool] = []

    def __call__(self, request: dict) -> str:
        prompt = request["messages"][-1]["content"]
        question = re.search(r"Question: (.*)", prompt).group(1)
        if "atomic clues" in prompt:
            if question.startswith("HOLD"):
                self.release.wait(60)
            return json.dumps({"clues": ["manages the Kesby plant"], "sub_questions": ["Who is the manager of the Kesby plant?"]})
        if self.synthesis_waits_for is not None:
            self.waited_and_saw.append(self.synthesis_waits_for.wait(30))
        if "BREAK" in question:  # facts_used that is no list: the protocol raises on it
            return json.dumps({"answer": "anything", "facts_used": 5})
        fact = re.search(r"\[1\] Q: .*? A: (.*)", prompt)
        return json.dumps({"answer": fact.group(1) if fact else "I don't know", "facts_used": [1]})


def cli_env(store, work_dir) -> dict:
    return {**os.environ, **CREDENTIALS, "MEMO_S3_ENDPOINT": store.client.meta.endpoint_url, "MEMO_BUCKET": store.bucket,
            "MEMO_WORK_DIR": str(work_dir), "TOKENIZERS_PARALLELISM": "false"}


def protocol_serve_args(executive_server, *extra) -> list[str]:
    return ["--mode", "single", "--executive", "openai", "--executive-model", "scripted", "--executive-base-url", executive_server.base_url,
            "--batch-window-ms", "20", *extra]


def served_model(port: int) -> str:
    return get_json(port, "/health")["serving"]["model_id"]


def test_memo_serve_follows_promotions_and_rollbacks_without_a_restart(store, two_memories, tmp_path):
    registry = ModelRegistry(store, tmp_path / "models")
    register_two(registry, two_memories)
    gated = GatedExecutive()
    with ScriptedOpenAI(gated) as executive_server:
        process, port, printed = start_serve(protocol_serve_args(executive_server, "--follow-interval", "0.2"), cli_env(store, tmp_path / "work"))
        try:
            openai_client = client(port)
            ask = lambda question=QUESTION: openai_client.chat.completions.create(  # noqa: E731
                model="memo", messages=[{"role": "user", "content": question}])
            assert ask().choices[0].message.content == ANSWER_A
            card = openai_client.models.list().data[0]
            assert card.model_extra["memory_model"] == "v000001-a" and card.created == int(registry.pointer()["history"][-1]["at"])

            # a request in flight when the pointer moves keeps the model it started on
            held = []
            in_flight = threading.Thread(target=lambda: held.append(ask(f"HOLD {QUESTION}")))
            in_flight.start()
            wait_for(lambda: any("HOLD" in r["messages"][-1]["content"] for r in executive_server.requests), what="the held request")
            registry.promote("v000002-b", "v000002 passed its gates")
            wait_for(lambda: served_model(port) == "v000002-b", what="the promotion to be followed")
            health = get_json(port, "/health")
            assert health["serving"]["promoted_at"] == registry.pointer()["history"][-1]["at"]
            assert [(d["model_id"], d["in_flight"]) for d in health["loaded"]] == [("v000002-b", 0), ("v000001-a", 1)]
            reply = ask()
            assert reply.choices[0].message.content == ANSWER_B and reply.system_fingerprint == "v000002-b"
            gated.release.set()
            in_flight.join(timeout=60)
            assert held[0].choices[0].message.content == ANSWER_A and held[0].model_extra["memo"]["memory_model"] == "v000001-a"
            assert [d["model_id"] for d in get_json(port, "/health")["loaded"]] == ["v000002-b"]  # the old model is unloaded

            subprocess.run([sys.executable, "-m", "memo_pipelines.apps.cli", "rollback", "--reason", "answers got worse"],
                           env=cli_env(store, tmp_path / "work"), check=True, capture_output=True, timeout=60)
            wait_for(lambda: served_model(port) == "v000001-a", what="the rollback to be followed")
            assert ask().choices[0].message.content == ANSWER_A
            assert get_json(port, "/health")["serving"]["reason"] == "answers got worse"
        finally:
            stop(process)
    assert "following the promoted pointer" in printed


@pytest.fixture(scope="module")
def protocol_server(s3_server, two_memories, tmp_path_factory):
    """`memo serve` over a local memory from the registry, a gated scripted executive, room for 8 requests and no queue."""
    store = ObjectStore(make_s3_client(s3_server.endpoint_url, *CREDENTIALS.values()), f"test-{uuid.uuid4().hex[:12]}")
    store.ensure_bucket()
    work = tmp_path_factory.mktemp("serve")
    register_two(ModelRegistry(store, work / "models"), two_memories)
    gated = GatedExecutive()
    with ScriptedOpenAI(gated) as executive_server:
        process, port, _ = start_serve(protocol_serve_args(executive_server, "--max-active", "8", "--max-waiting", "0", "--max-body-bytes", "4096"),
                                       cli_env(store, work / "work"))
        try:
            yield port, gated, executive_server
        finally:
            gated.release.set()
            stop(process)


def test_eight_concurrent_clients_are_answered_with_shared_memory_batches_and_a_ninth_gets_429(protocol_server):
    port, gated, executive_server = protocol_server
    gated.release.clear()
    before = get_json(port, "/health")["calls"]
    replies, threads = [], []
    for n in range(8):
        threads.append(threading.Thread(target=lambda n=n: replies.append(client(port).chat.completions.create(
            model="memo", messages=[{"role": "user", "content": f"HOLD {n}: {QUESTION}"}]))))
        threads[-1].start()
    wait_for(lambda: sum("HOLD" in r["messages"][-1]["content"] for r in executive_server.requests) >= 8, what="8 requests in flight at once")
    with pytest.raises(openai.RateLimitError) as refused:
        client(port).chat.completions.create(model="memo", messages=[{"role": "user", "content": QUESTION}])
    assert int(refused.value.response.headers["Retry-After"]) >= 1
    assert refused.value.body["code"] == "queue_full"
    gated.release.set()
    for thread in threads:
        thread.join(timeout=120)
    assert len(replies) == 8 and all(r.choices[0].message.content == ANSWER_A for r in replies)
    calls = get_json(port, "/health")["calls"]
    turns = calls["memory_calls"] - before.get("memory_calls", 0)
    batches = calls["memory_batches"] - before.get("memory_batches", 0)
    assert turns == 8 == sum(r.model_extra["memo"]["memory_calls"] for r in replies)
    assert batches < turns  # the memory turns of concurrent requests went to the model together


def test_usage_sums_the_executive_and_memory_tokens_of_the_answer(protocol_server):
    port, gated, executive_server = protocol_server
    gated.release.set()
    seen = len(executive_server.exchanges)
    reply = client(port).chat.completions.create(model="memo", messages=[{"role": "user", "content": QUESTION}])
    mine = executive_server.exchanges[seen:]
    assert len(mine) == 2  # decomposition and synthesis
    usage = reply.model_extra["memo"]["usage"]
    assert usage["executive"] == {"prompt_tokens": sum(r["usage"]["prompt_tokens"] for _, r in mine),
                                  "completion_tokens": sum(r["usage"]["completion_tokens"] for _, r in mine)}
    assert usage["memory"]["prompt_tokens"] > 0 and usage["memory"]["completion_tokens"] > 0
    assert reply.usage.prompt_tokens == usage["executive"]["prompt_tokens"] + usage["memory"]["prompt_tokens"]
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_a_stream_sends_progress_while_the_protocol_works_then_the_answer(protocol_server):
    port, gated, _ = protocol_server
    gated.release.set()
    progress_seen = threading.Event()
    gated.synthesis_waits_for, gated.waited_and_saw = progress_seen, []
    try:
        chunks = []
        for chunk in client(port).chat.completions.create(model="memo", messages=[{"role": "user", "content": QUESTION}], stream=True,
                                                          stream_options={"include_usage": True}):
            chunks.append(chunk)
            if (chunk.model_extra or {}).get("memo_progress"):
                progress_seen.set()
    finally:
        gated.synthesis_waits_for = None
    assert gated.waited_and_saw == [True]  # the memory turn's progress reached the client before the synthesis was asked for
    progress = [c.model_extra["memo_progress"] for c in chunks if (c.model_extra or {}).get("memo_progress")]
    assert [p["event"] for p in progress] == ["executive_call", "memory_turn", "executive_call"]
    assert progress[1]["answers"][0] == ANSWER_A
    content = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert content == [ANSWER_A]  # the answer once it exists, never pretended tokens
    assert chunks[-1].usage.total_tokens > 0 and not chunks[-1].choices


def post(port: int, path: str, body: bytes, method: str = "POST") -> tuple[int, dict, dict]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status, dict(reply.headers), json.loads(reply.read())
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.loads(error.read())


def test_errors_have_openai_bodies_and_status_codes_and_a_failing_protocol_is_not_retried(protocol_server):
    port, gated, executive_server = protocol_server
    gated.release.set()
    ask = {"model": "memo", "messages": [{"role": "user", "content": QUESTION}]}
    status, _, body = post(port, "/v1/chat/completions", b"{not json")
    assert status == 400 and body["error"]["type"] == "invalid_request_error" and "bad JSON" in body["error"]["message"]
    status, _, body = post(port, "/v1/chat/completions", json.dumps({**ask, "messages": "hello"}).encode())
    assert status == 400 and body["error"]["param"] == "messages"
    status, _, body = post(port, "/v1/chat/completions", json.dumps({**ask, "messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]}).encode())
    assert status == 400 and "no user message" in body["error"]["message"]
    status, _, body = post(port, "/v1/chat/completions", json.dumps({**ask, "stream": True, "stream_options": "usage"}).encode())
    assert status == 400 and body["error"]["param"] == "stream"
    status, _, body = post(port, "/v1/chat/completions", json.dumps({**ask, "content": "x" * 5000}).encode())
    assert status == 413 and "limit is 4096" in body["error"]["message"]
    status, _, body = post(port, "/v1/embeddings", json.dumps(ask).encode())
    assert status == 404 and body["error"]["message"].startswith("no route")
    status, _, body = post(port, "/v1/chat/completions", b"", method="GET")
    assert status == 405
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client(port).chat.completions.create(model="gpt-4o", messages=ask["messages"])

    seen = len(executive_server.requests)
    with pytest.raises(openai.InternalServerError) as failed:
        client(port, max_retries=2).chat.completions.create(model="memo", messages=[{"role": "user", "content": f"BREAK {QUESTION}"}])
    assert failed.value.body["type"] == "server_error" and "error id" in failed.value.body["message"]
    assert "TypeError" not in failed.value.body["message"] and "facts_used" not in failed.value.body["message"]  # no exception text
    assert len(executive_server.requests) - seen == 2  # one protocol run: the client was told not to retry
    assert client(port).chat.completions.create(**ask).choices[0].message.content == ANSWER_A  # the server lives on


def test_a_launched_memory_server_is_replaced_blue_green_on_a_promotion(store, two_memories, tmp_path):
    """--memory-launch: each promoted memory gets its own OpenAI-compatible server process (vLLM's place; here a real
    local model behind the OpenAI API); the new one answers once it lists the model, the old one is stopped."""
    registry = ModelRegistry(store, tmp_path / "models")
    register_two(registry, two_memories)
    launch = f"{sys.executable} -m tests.openai_stub --model-dir {{model_dir}} --served-model-name {{model_id}} --port {{port}}"
    process, port, printed = start_serve(["--mode", "direct", "--memory-launch", launch, "--follow-interval", "0.2"], cli_env(store, tmp_path / "work"))
    memory_url = lambda: get_json(port, "/health")["serving"]["memory"].split(" at ")[1]  # noqa: E731
    try:
        ask = lambda: client(port).chat.completions.create(model="memo", messages=[{"role": "user", "content": QUESTION}])  # noqa: E731
        assert ask().choices[0].message.content == ANSWER_A
        old_url = memory_url()
        registry.promote("v000002-b", "v000002 passed its gates")
        wait_for(lambda: served_model(port) == "v000002-b", timeout_s=120, what="the new memory server to take over")
        assert ask().choices[0].message.content == ANSWER_B
        new_url = memory_url()
        assert new_url != old_url
        wait_for(lambda: len(get_json(port, "/health")["loaded"]) == 1, what="the old memory server to be stopped")
        with pytest.raises(urllib.error.URLError):
            urllib.request.urlopen(f"{old_url}/models", timeout=5)
    finally:
        stop(process)
    assert "(launch)" in printed
    with pytest.raises(urllib.error.URLError):  # memo serve stopped the memory server it launched on its way out
        urllib.request.urlopen(f"{new_url}/models", timeout=5)
