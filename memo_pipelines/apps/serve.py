"""An OpenAI-compatible chat endpoint in front of the protocol: any OpenAI client can use the memory-augmented executive.

POST /v1/chat/completions answers the last user message through the protocol (the memory is stateless, so earlier
turns are not sent to it); the reply's content is the answer followed by its sources, `usage` sums the tokens of every
executive and memory call the answer took, and the whole protocol result rides along under the extra key "memo".
"stream": true sends progress events (each executive call, each memory turn with its sub-questions and answers) while
the protocol works, then the answer: the executive replies in JSON, so the answer exists only once it is parsed, and
no event claims tokens that were not produced. GET /v1/models and GET /health name the memory model being served and
when it was promoted.

Requests run concurrently, at most `max_active` at once with `max_waiting` more queued; past that the server answers
429 with Retry-After. Errors have OpenAI's shape ({"error": {"message", "type", "param", "code"}}): 400 for a bad
request, 404 for an unknown route or model, 405 for a wrong method, 413 for a body over the limit, 500 when the
protocol raises (with `x-should-retry: false`: the same question would fail the same way, so clients do not retry).
"""

import json
import math
import queue
import sys
import threading
import time
import traceback
import uuid
from collections import Counter
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from memo_pipelines.apps.batching import RequestModel, Tally
from memo_pipelines.apps.follow import ModelSwitch, PointerWatcher
from memo_pipelines.protocol import Protocol, ProtocolConfig


def reply_text(answer) -> str:
    return answer.answer + (f"\n\nSources: {', '.join(answer.sources)}" if answer.sources else "")


@dataclass(frozen=True)
class ServeLimits:
    max_active: int = 8  # requests answered at once
    max_waiting: int = 16  # requests queued behind them; one more is answered 429
    max_body_bytes: int = 1 << 20
    keepalive_s: float = 15.0  # a stream with nothing to say for this long gets an SSE comment


class QueueFull(Exception):
    pass


class Admission:
    """At most max_active requests run; max_waiting more wait their turn; the rest are turned away at once."""

    def __init__(self, limits: ServeLimits):
        self.limits = limits
        self._cond = threading.Condition()
        self.active = self.waiting = 0
        self._mean_s = 1.0  # running mean of a request's duration: what Retry-After is computed from

    @contextmanager
    def enter(self):
        with self._cond:
            if self.active + self.waiting >= self.limits.max_active + self.limits.max_waiting:
                raise QueueFull(self.retry_after_s())
            self.waiting += 1
            while self.active >= self.limits.max_active:
                self._cond.wait()
            self.waiting, self.active = self.waiting - 1, self.active + 1
        started = time.monotonic()
        try:
            yield
        finally:
            with self._cond:
                self.active -= 1
                self._mean_s = 0.8 * self._mean_s + 0.2 * (time.monotonic() - started)
                self._cond.notify()

    def retry_after_s(self) -> int:
        """About when a place frees up: the queue ahead, worked off max_active at a time."""
        return max(1, math.ceil(self._mean_s * (self.waiting + 1) / self.limits.max_active))

    def describe(self) -> dict:
        return {"active": self.active, "waiting": self.waiting, "max_active": self.limits.max_active, "max_waiting": self.limits.max_waiting}


class RequestError(Exception):
    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", code: str | None = None, param: str | None = None):
        super().__init__(message)
        self.status, self.kind, self.code, self.param = status, kind, code, param


class ProtocolServer:
    """The protocol behind HTTP: one shared executive, the memory of whichever deployment the switch serves."""

    def __init__(self, switch: ModelSwitch, executive, config: ProtocolConfig, model_name: str = "memo", host: str = "127.0.0.1",
                 port: int = 8000, limits: ServeLimits = ServeLimits(), watcher: PointerWatcher | None = None, stats: Tally | None = None):
        self.switch, self.executive, self.config, self.model_name = switch, executive, config, model_name
        self.limits, self.watcher = limits, watcher
        self.admission = Admission(limits)
        self.stats = stats if stats is not None else Tally()
        self.httpd = ThreadingHTTPServer((host, port), _handler(self))
        self.httpd.daemon_threads = True

    @property
    def base_url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def answer(self, question: str, on_progress=None) -> tuple[object, dict, object]:
        """(protocol answer, usage by role, deployment) for one question, on the deployment current when it started."""
        usage = {"executive": Counter(), "memory": Counter()}

        def on_call(role, phase, conversations, replies):
            if on_progress is None:
                return
            if role == "executive" and phase == "start":
                on_progress({"event": "executive_call"})
            elif role == "memory" and phase == "done":
                on_progress({"event": "memory_turn", "sub_questions": [c[-1]["content"] for c in conversations], "answers": replies})

        with self.switch.acquire() as deployment:
            executive = RequestModel(self.executive, "executive", usage["executive"], on_call) if self.executive is not None else None
            memory = RequestModel(deployment.memory, "memory", usage["memory"], on_call)
            answer = Protocol(executive, memory, self.config, deployment.sources).ask(question)
        self.stats.add({"requests": 1, **{f"{role}_{k}": v for role, counter in usage.items() for k, v in counter.items()}})
        return answer, usage, deployment

    def health(self) -> dict:
        return {"status": "ok", "model": self.model_name, "serving": self.switch.current.describe(), "loaded": self.switch.loaded(),
                "follow": self.watcher.describe() if self.watcher else None, "queue": self.admission.describe(),
                "calls": self.stats.snapshot(), "limits": asdict(self.limits)}

    def model_card(self) -> dict:
        serving = self.switch.current
        return {"id": self.model_name, "object": "model", "created": int(serving.promoted_at or serving.loaded_at), "owned_by": "memo-pipelines",
                "memory_model": serving.model_id, "promoted_at": serving.promoted_at}

    def serve_forever(self) -> None:
        if self.watcher:
            self.watcher.start()
        self.httpd.serve_forever()

    def start(self) -> "ProtocolServer":
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.watcher:
            self.watcher.stop()
        self.httpd.shutdown()
        self.httpd.server_close()


def _last_user_message(body: dict) -> str:
    messages = body.get("messages")
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise RequestError(400, "'messages' must be a list of message objects", param="messages")
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):  # content parts: keep the text ones
                content = " ".join(part["text"] for part in content if isinstance(part, dict) and isinstance(part.get("text"), str))
            if isinstance(content, str) and content.strip():
                return content
            break
    raise RequestError(400, "the request has no user message with text", param="messages")


def usage_body(usage: dict) -> dict:
    prompt = sum(c["prompt_tokens"] for c in usage.values())
    completion = sum(c["completion_tokens"] for c in usage.values())
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def memo_body(answer, usage: dict, deployment) -> dict:
    return {**answer.to_json(), "usage": {role: {k: c[k] for k in ("prompt_tokens", "completion_tokens")} for role, c in usage.items()},
            "memory_model": deployment.model_id, "promoted_at": deployment.promoted_at}


def _handler(server: ProtocolServer):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _send(self, status: int, payload: dict, headers: dict | None = None) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def _error(self, error: RequestError, headers: dict | None = None) -> None:
            self._send(error.status, {"error": {"message": str(error), "type": error.kind, "param": error.param, "code": error.code or error.status}},
                       headers)

        def _route(self) -> str:
            return self.path.split("?")[0].rstrip("/")

        def do_GET(self):
            route = self._route()
            if route == "/health":
                return self._send(200, server.health())
            if route == "/v1/models":
                return self._send(200, {"object": "list", "data": [server.model_card()]})
            if route == f"/v1/models/{server.model_name}":
                return self._send(200, server.model_card())
            if route.startswith("/v1/models/"):
                return self._error(RequestError(404, f"the model '{route[len('/v1/models/'):]}' does not exist", code="model_not_found"))
            if route == "/v1/chat/completions":
                return self._error(RequestError(405, "use POST for /v1/chat/completions"))
            self._error(RequestError(404, f"no route GET {self.path}", code="not_found"))

        def do_POST(self):
            try:
                self._chat_completion()
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client left
            except Exception as error:  # whatever went wrong, the client gets an answer it will not retry
                self._error(_server_error(error), {"x-should-retry": "false"})

        def _chat_completion(self) -> None:
            if self._route() != "/v1/chat/completions":
                return self._error(RequestError(404, f"no route POST {self.path}", code="not_found"))
            try:
                body = self._body()
                question = _last_user_message(body)
                if body.get("model") not in (None, server.model_name):
                    raise RequestError(404, f"the model '{body['model']}' does not exist; this server serves '{server.model_name}'",
                                       code="model_not_found", param="model")
                stream, options = body.get("stream", False), body.get("stream_options") or {}
                if not isinstance(stream, bool) or not isinstance(options, dict):
                    raise RequestError(400, "'stream' must be true or false and 'stream_options' an object", param="stream")
            except RequestError as error:
                return self._error(error)
            try:
                with server.admission.enter():
                    if stream:
                        return self._stream(question, bool(options.get("include_usage")))
                    self._complete(question)
            except QueueFull as full:
                self._error(RequestError(429, f"{server.limits.max_active} requests are being answered and {server.limits.max_waiting} wait; "
                                              f"try again in {full.args[0]} s", kind="rate_limit_error", code="queue_full"),
                            {"Retry-After": str(full.args[0])})

        def _body(self) -> dict:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                self.close_connection = True
                raise RequestError(411, "send the body with a Content-Length")
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                raise RequestError(400, "bad Content-Length") from None
            if length > server.limits.max_body_bytes:
                self.close_connection = True
                self._discard(length)  # a client still sending when the socket closes would see a reset, not the 413
                raise RequestError(413, f"the body has {length} bytes; the limit is {server.limits.max_body_bytes}", code="request_too_large")
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
            except ValueError as error:
                raise RequestError(400, f"bad JSON: {error}") from None
            if not isinstance(body, dict):
                raise RequestError(400, "the body must be a JSON object")
            return body

        def _discard(self, length: int, most: int = 64 << 20) -> None:
            left = min(length, most)
            while left > 0 and (block := self.rfile.read(min(left, 1 << 16))):
                left -= len(block)

        def _complete(self, question: str) -> None:
            try:
                answer, usage, deployment = server.answer(question)
            except Exception as error:
                return self._error(_server_error(error), {"x-should-retry": "false"})
            self._send(200, {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion", "created": int(time.time()),
                             "model": server.model_name, "system_fingerprint": deployment.model_id,
                             "choices": [{"index": 0, "message": {"role": "assistant", "content": reply_text(answer)}, "logprobs": None,
                                          "finish_reason": "stop"}],
                             "usage": usage_body(usage), "memo": memo_body(answer, usage, deployment)})

        def _stream(self, question: str, include_usage: bool) -> None:
            completion_id, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
            events: queue.Queue = queue.Queue()

            def work():
                try:
                    events.put(("answer", server.answer(question, on_progress=lambda p: events.put(("progress", p)))))
                except Exception as error:
                    events.put(("error", _server_error(error)))

            def chunk(delta: dict | None, finish: str | None = None, **extra) -> dict:
                choices = [] if delta is None else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
                return {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": server.model_name,
                        "choices": choices, **extra}

            worker = threading.Thread(target=work, daemon=True)
            worker.start()
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.end_headers()
            try:
                self._event(chunk({"role": "assistant", "content": ""}))
                while True:
                    try:
                        kind, value = events.get(timeout=server.limits.keepalive_s)
                    except queue.Empty:
                        self.wfile.write(b": still working\n\n")
                        self.wfile.flush()
                        continue
                    if kind == "progress":
                        self._event(chunk({}, memo_progress=value))
                    elif kind == "error":
                        self._event({"error": {"message": str(value), "type": value.kind, "param": None, "code": value.status}})
                        break
                    else:
                        answer, usage, deployment = value
                        self._event(chunk({"content": reply_text(answer)}, system_fingerprint=deployment.model_id))
                        self._event(chunk({}, "stop", memo=memo_body(answer, usage, deployment)))
                        if include_usage:
                            self._event(chunk(None, usage=usage_body(usage)))
                        break
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client left; the answer it started still runs to its end, within its place in the queue
            worker.join()

        def _event(self, payload: dict) -> None:
            self.wfile.write(f"data: {json.dumps(payload)}\n\n".encode())
            self.wfile.flush()

    return Handler


def _server_error(error: Exception) -> RequestError:
    print(f"memo serve: the protocol raised {type(error).__name__}: {error}\n{traceback.format_exc()}", file=sys.stderr, flush=True)
    return RequestError(500, f"the protocol failed: {type(error).__name__}: {error}", kind="server_error", code="protocol_error")
