"""`memo serve` is safe to expose: an API key guards it (required off loopback, never printed), every read is bounded,
malformed requests sent over a raw socket get a prompt answer instead of holding the connection, and the official
`openai` client works with the key, streaming and not."""

import json
import os
import socket
import subprocess
import sys
import time

import openai
import pytest

from tests.openai_stub import ScriptedOpenAI
from tests.test_serve import ROOT, QUESTION, executive, memory, start_serve, stop

API_KEY = "sk-memo-test-9f2c41d7"


def read_reply(sock: socket.socket, timeout_s: float) -> tuple[int, dict, bytes]:
    """(status, headers, body) of one HTTP/1.1 reply; the connection is read until the body's length or its close."""
    sock.settimeout(timeout_s)
    data = b""
    while b"\r\n\r\n" not in data:
        block = sock.recv(65536)
        if not block:
            break
        data += block
    head, _, body = data.partition(b"\r\n\r\n")
    if not head:
        raise AssertionError("the server closed the connection without a reply")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", len(body)))
    while len(body) < length:
        block = sock.recv(65536)
        if not block:
            break
        body += block
    return int(lines[0].split()[1]), headers, body


def raw(port: int, head: str, body: bytes = b"", timeout_s: float = 5.0, pause_s: float = 0.0) -> tuple[int, dict, bytes, float]:
    """Send a request exactly as written (head without its final blank line), then read the reply: (status, headers,
    body, seconds until the reply)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        started = time.monotonic()
        sock.sendall(head.encode("latin-1") + b"\r\n\r\n" + body)
        if pause_s:
            time.sleep(pause_s)
        status, headers, reply = read_reply(sock, timeout_s)
        return status, headers, reply, time.monotonic() - started


def chat_head(length: str | None, key: str | None = API_KEY, extra: str = "") -> str:
    lines = ["POST /v1/chat/completions HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json"]
    lines += [f"Content-Length: {length}"] if length is not None else []
    lines += [f"Authorization: Bearer {key}"] if key else []
    return "\r\n".join(lines + ([extra] if extra else []))


@pytest.fixture(scope="module")
def keyed():
    """`memo serve` with an API key, a 4 KiB body limit and a 1 s body timeout, over scripted endpoints."""
    with ScriptedOpenAI(executive) as executive_server, ScriptedOpenAI(memory) as memory_server:
        env = {**{k: v for k, v in os.environ.items() if k != "MEMO_S3_ENDPOINT"}, "MEMO_API_KEY": API_KEY}
        process, port, printed = start_serve(["--mode", "single", "--executive", "openai", "--executive-model", "scripted",
                                              "--executive-base-url", executive_server.base_url, "--memory", "openai", "--memory-model",
                                              "memory", "--memory-base-url", memory_server.base_url, "--max-body-bytes", "4096",
                                              "--body-timeout", "1"], env)
        try:
            yield port, printed
        finally:
            stop(process)


def test_the_openai_client_with_the_key_gets_answers_streaming_and_not(keyed):
    port, printed = keyed
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=API_KEY, max_retries=0, timeout=60)
    reply = client.chat.completions.create(model="memo", messages=[{"role": "user", "content": QUESTION}])
    assert reply.choices[0].message.content.startswith("Rafael Ondo") and reply.usage.total_tokens > 0
    chunks = list(client.chat.completions.create(model="memo", messages=[{"role": "user", "content": QUESTION}], stream=True,
                                                 stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).startswith("Rafael Ondo")
    assert chunks[-1].usage.total_tokens > 0
    assert [m.id for m in client.models.list()] == ["memo"]
    for wrong in ("unused", API_KEY + "x"):
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=wrong, max_retries=0).chat.completions.create(
                model="memo", messages=[{"role": "user", "content": QUESTION}])
    assert "MEMO_API_KEY" in printed and API_KEY not in printed  # the banner names the variable, never the key


def test_malformed_requests_over_a_raw_socket_get_prompt_answers(keyed):
    port, _ = keyed
    ask = json.dumps({"model": "memo", "messages": [{"role": "user", "content": QUESTION}]}).encode()

    status, _, _, seconds = raw(port, chat_head("-1"), ask)
    assert status == 400 and seconds < 5  # a negative length: refused, not read until the client gives up
    status, _, body, _ = raw(port, chat_head(str(10**12)))  # a huge length, no body: refused before any of it is read
    assert status == 413 and json.loads(body)["error"]["code"] == "request_too_large"
    status, _, body, _ = raw(port, chat_head("5000"), b"{" + b" " * 4999)
    assert status == 413 and "limit is 4096" in json.loads(body)["error"]["message"]
    status, _, body, _ = raw(port, chat_head(None))  # no length at all
    assert status == 411 and json.loads(body)["error"]["code"] == "length_required"
    status, _, _, _ = raw(port, chat_head("0x10"), b"{}")
    assert status == 400
    status, _, _, _ = raw(port, chat_head("2", extra="X-Padding: " + "a" * 20000), b"{}")  # headers past 16 KiB
    assert status == 400

    # a slow body: 10 of 100 bytes, then nothing; answered 408 once the 1 s body timeout passes, the connection closed
    status, headers, body, seconds = raw(port, chat_head("100"), b'{"model": ', timeout_s=10)
    assert status == 408 and 0.9 < seconds < 5 and headers.get("connection") == "close"

    status, _, body, _ = raw(port, chat_head(str(len(b"{not json"))), b"{not json")
    assert status == 400 and "bad JSON" in json.loads(body)["error"]["message"]
    other = json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": QUESTION}]}).encode()
    status, _, body, _ = raw(port, chat_head(str(len(other))), other)
    assert status == 404 and json.loads(body)["error"]["code"] == "model_not_found"

    status, headers, body, _ = raw(port, chat_head(str(len(ask)), key=None), ask)  # no key
    assert status == 401 and json.loads(body)["error"]["code"] == "invalid_api_key" and headers["www-authenticate"] == "Bearer"
    status, _, _, _ = raw(port, chat_head(str(len(ask)), key="sk-wrong"), ask)
    assert status == 401
    status, _, body, _ = raw(port, "GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1")
    assert status == 401
    status, _, body, _ = raw(port, "GET /health HTTP/1.1\r\nHost: 127.0.0.1")  # liveness without the key, and nothing more
    assert status == 200 and json.loads(body) == {"status": "ok"}

    status, _, body, _ = raw(port, chat_head(str(len(ask))), ask, timeout_s=30)  # the server still answers a good request
    assert status == 200 and json.loads(body)["choices"][0]["message"]["content"].startswith("Rafael Ondo")


def test_binding_beyond_loopback_needs_an_api_key():
    env = {k: v for k, v in os.environ.items() if k not in ("MEMO_API_KEY", "MEMO_S3_ENDPOINT")}
    done = subprocess.run([sys.executable, "-m", "memo_pipelines.apps.cli", "serve", "--host", "0.0.0.0", "--port", "0", "--memory", "openai",
                           "--memory-model", "memory", "--memory-base-url", "http://127.0.0.1:9/v1", "--mode", "direct"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "needs an API key" in done.stderr and "MEMO_API_KEY" in done.stderr
