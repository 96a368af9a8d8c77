"""An OpenAI-compatible chat endpoint in front of the protocol: any OpenAI client can use the memory-augmented executive.

POST /v1/chat/completions answers the last user message through the protocol (the memory is stateless, so earlier
turns are not sent to it); the reply's content is the answer followed by its sources, `usage` sums the tokens of every
executive and memory call the answer took, and the whole protocol result rides along under the extra key "memo".
"stream": true sends progress events (each executive call, each memory turn with its sub-questions and answers) while
the protocol works, then the answer: the executive replies in JSON, so the answer exists only once it is parsed, and
no event claims tokens that were not produced. GET /v1/models and GET /health name the memory model being served and
when it was promoted.

The HTTP side is Starlette on uvicorn (h11: HTTP/1.1 with bounded header sizes); the protocol runs in worker threads.
Requests run concurrently, at most `max_active` at once with `max_waiting` more queued; past that the server answers
429 with Retry-After. Every read is bounded: a body needs a Content-Length (or chunks) no larger than `max_body_bytes`
and must arrive within `body_timeout_s`. With an API key (required on any address but loopback), every /v1 route
wants `Authorization: Bearer <key>` and GET /health says only "ok" to a caller without it. Errors have OpenAI's shape
({"error": {"message", "type", "param", "code"}}): 400 for a bad request, 401 for a missing or wrong key, 404 for an
unknown route or model, 405 for a wrong method, 408 for a body too slow, 411 for a body of no stated length, 413 for a
body over the limit, 500 when the protocol raises: its body names an error id and no exception text (the log has
it), with `x-should-retry: false`: the same question would fail the same way, so clients do not retry.
"""

import asyncio
import hmac
import ipaddress
import json
import math
import socket
import sys
import threading
import time
import traceback
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

from memo_pipelines.apps.batching import RequestModel, Tally
from memo_pipelines.apps.follow import ModelSwitch, PointerWatcher
from memo_pipelines.protocol import Protocol, ProtocolConfig

API_KEY_ENV = "MEMO_API_KEY"  # where `memo serve` reads its API key unless --api-key-env names another variable


def reply_text(answer) -> str:
    return answer.answer + (f"\n\nSources: {', '.join(answer.sources)}" if answer.sources else "")


@dataclass(frozen=True)
class ServeLimits:
    max_active: int = 8  # requests answered at once
    max_waiting: int = 16  # requests queued behind them; one more is answered 429
    max_body_bytes: int = 1 << 20
    body_timeout_s: float = 30.0  # a request body not complete this long after its headers is answered 408
    keepalive_s: float = 15.0  # a stream with nothing to say for this long gets an SSE comment
    max_connections: int = 256  # connections and requests at once; past that uvicorn answers 503
    max_header_bytes: int = 16 << 10


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class QueueFull(Exception):
    pass


class Admission:
    """At most max_active requests run; max_waiting more wait their turn; the rest are turned away at once. Used from
    the event loop only, so plain counters suffice."""

    def __init__(self, limits: ServeLimits):
        self.limits = limits
        self.active = self.waiting = 0
        self._slots: asyncio.Semaphore | None = None
        self._mean_s = 1.0  # running mean of a request's duration: what Retry-After is computed from

    async def acquire(self) -> float:
        """Wait for a place (QueueFull when the queue is full); the start time to hand back to release()."""
        if self.active + self.waiting >= self.limits.max_active + self.limits.max_waiting:
            raise QueueFull(self.retry_after_s())
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.limits.max_active)
        self.waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self.waiting -= 1
        self.active += 1
        return time.monotonic()

    def release(self, started: float) -> None:
        self.active -= 1
        self._mean_s = 0.8 * self._mean_s + 0.2 * (time.monotonic() - started)
        self._slots.release()

    def retry_after_s(self) -> int:
        """About when a place frees up: the queue ahead, worked off max_active at a time."""
        return max(1, math.ceil(self._mean_s * (self.waiting + 1) / self.limits.max_active))

    def describe(self) -> dict:
        return {"active": self.active, "waiting": self.waiting, "max_active": self.limits.max_active, "max_waiting": self.limits.max_waiting}


class RequestError(Exception):
    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", code: str | None = None, param: str | None = None,
                 close: bool = False):
        super().__init__(message)
        self.status, self.kind, self.code, self.param = status, kind, code, param
        self.close = close  # the body was not read to its end: the connection cannot carry another request


class ProtocolServer:
    """The protocol behind HTTP: one shared executive, the memory of whichever deployment the switch serves."""

    def __init__(self, switch: ModelSwitch, executive, config: ProtocolConfig, model_name: str = "memo", host: str = "127.0.0.1",
                 port: int = 8000, limits: ServeLimits = ServeLimits(), watcher: PointerWatcher | None = None, stats: Tally | None = None,
                 api_key: str | None = None, verify=None):
        import uvicorn

        if not api_key and not is_loopback(host):
            raise ValueError(f"an API key is required to serve on {host}: set {API_KEY_ENV} (or bind to 127.0.0.1)")
        self.switch, self.executive, self.config, self.model_name = switch, executive, config, model_name
        self.limits, self.watcher, self._api_key = limits, watcher, (api_key or "").encode() or None
        self.verify = verify  # verify(question, answer, reader) -> answer: the hybrid route's check against the live corpus
        self.admission = Admission(limits)
        self.stats = stats if stats is not None else Tally()
        self._threads = ThreadPoolExecutor(max_workers=limits.max_active, thread_name_prefix="memo-answer")
        self._background: set[asyncio.Task] = set()
        self.app = build_app(self)
        # bound here, so a busy port fails at construction and base_url knows the port the kernel chose for port 0
        self.socket = socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET, backlog=128)
        self.uvicorn = uvicorn.Server(uvicorn.Config(
            self.app, http="h11", lifespan="off", log_level="warning", access_log=False, server_header=False, timeout_keep_alive=15,
            timeout_graceful_shutdown=5, limit_concurrency=limits.max_connections, h11_max_incomplete_event_size=limits.max_header_bytes))
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self.socket.getsockname()[:2]
        return f"http://{f'[{host}]' if ':' in host else host}:{port}/v1"

    def authorised(self, headers) -> bool:
        if self._api_key is None:
            return True
        scheme, _, key = headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(key.strip().encode(), self._api_key)

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
            if self.verify is not None:
                answer = self.verify(question, answer, executive or memory)
        self.stats.add({"requests": 1, **{f"{role}_{k}": v for role, counter in usage.items() for k, v in counter.items()}})
        return answer, usage, deployment

    async def answer_in_thread(self, question: str, on_progress=None):
        return await asyncio.get_running_loop().run_in_executor(self._threads, self.answer, question, on_progress)

    def keep(self, task: asyncio.Task) -> None:
        """Hold a reference to a task that outlives its request (a stream's protocol run after the client left)."""
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def health(self, detailed: bool = True) -> dict:
        if not detailed:
            return {"status": "ok"}
        return {"status": "ok", "model": self.model_name, "serving": self.switch.current.describe(), "loaded": self.switch.loaded(),
                "follow": self.watcher.describe() if self.watcher else None, "queue": self.admission.describe(),
                "calls": self.stats.snapshot(), "limits": asdict(self.limits), "api_key_required": self._api_key is not None}

    def model_card(self) -> dict:
        serving = self.switch.current
        return {"id": self.model_name, "object": "model", "created": int(serving.promoted_at or serving.loaded_at), "owned_by": "memo-pipelines",
                "memory_model": serving.model_id, "promoted_at": serving.promoted_at}

    def serve_forever(self) -> None:
        """Serve until stopped (or, on the main thread, until SIGINT or SIGTERM, which uvicorn raises again once it has shut down)."""
        if self.watcher:
            self.watcher.start()
        self.uvicorn.run(sockets=[self.socket])

    def start(self) -> "ProtocolServer":
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()
        while not self.uvicorn.started and self._thread.is_alive():
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self.watcher:
            self.watcher.stop()
        self.uvicorn.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.close()

    def close(self) -> None:
        self.socket.close()
        self._threads.shutdown(wait=False, cancel_futures=True)


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


def error_body(error: RequestError) -> dict:
    return {"error": {"message": str(error), "type": error.kind, "param": error.param, "code": error.code or error.status}}


def server_error(error: Exception) -> RequestError:
    """The client learns an id to quote; the exception and its traceback go to the log only."""
    error_id = uuid.uuid4().hex[:12]
    print(f"memo serve: error {error_id}: the protocol raised {type(error).__name__}: {error}\n{traceback.format_exc()}", file=sys.stderr, flush=True)
    return RequestError(500, f"the protocol failed (error id {error_id}; the server log has the details)", kind="server_error", code="protocol_error")


async def read_json_body(request, limits: ServeLimits) -> dict:
    """The request's JSON object, read within the size and time limits."""
    from starlette.requests import ClientDisconnect

    chunked = "chunked" in request.headers.get("transfer-encoding", "").lower()
    stated = request.headers.get("content-length")
    if stated is None and not chunked:
        raise RequestError(411, "send the body with a Content-Length", code="length_required", close=True)
    if stated is not None and (not stated.isdigit() or int(stated) > limits.max_body_bytes):
        if not stated.isdigit():
            raise RequestError(400, "bad Content-Length", close=True)
        raise RequestError(413, f"the body has {int(stated)} bytes; the limit is {limits.max_body_bytes}", code="request_too_large", close=True)
    data = bytearray()
    try:
        async with asyncio.timeout(limits.body_timeout_s):
            async for block in request.stream():
                data += block
                if len(data) > limits.max_body_bytes:
                    raise RequestError(413, f"the body has more than {limits.max_body_bytes} bytes, the limit", code="request_too_large", close=True)
    except TimeoutError:
        raise RequestError(408, f"the body did not arrive within {limits.body_timeout_s:g} s", code="request_timeout", close=True) from None
    except ClientDisconnect:
        raise RequestError(400, "the client left before sending its body", close=True) from None
    try:
        body = json.loads(bytes(data) or b"{}")
    except ValueError as error:
        raise RequestError(400, f"bad JSON: {error}") from None
    if not isinstance(body, dict):
        raise RequestError(400, "the body must be a JSON object")
    return body


def build_app(server: ProtocolServer):
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.responses import JSONResponse, StreamingResponse
    from starlette.routing import Route

    def error_response(error: RequestError, headers: dict | None = None) -> JSONResponse:
        headers = {**(headers or {}), **({"Connection": "close"} if error.close else {})}
        return JSONResponse(error_body(error), status_code=error.status, headers=headers)

    async def health(request):
        return JSONResponse(server.health(detailed=server.authorised(request.headers)))

    async def models(request):
        return JSONResponse({"object": "list", "data": [server.model_card()]})

    async def model(request):
        model_id = request.path_params["model_id"]
        if model_id != server.model_name:
            return error_response(RequestError(404, f"the model '{model_id}' does not exist", code="model_not_found"))
        return JSONResponse(server.model_card())

    async def chat_completions(request):
        try:
            body = await read_json_body(request, server.limits)
            question = _last_user_message(body)
            if body.get("model") not in (None, server.model_name):
                raise RequestError(404, f"the model '{body['model']}' does not exist; this server serves '{server.model_name}'",
                                   code="model_not_found", param="model")
            stream, options = body.get("stream", False), body.get("stream_options") or {}
            if not isinstance(stream, bool) or not isinstance(options, dict):
                raise RequestError(400, "'stream' must be true or false and 'stream_options' an object", param="stream")
        except RequestError as error:
            return error_response(error)
        try:
            started = await server.admission.acquire()
        except QueueFull as full:
            return error_response(RequestError(429, f"{server.limits.max_active} requests are being answered and {server.limits.max_waiting} "
                                                    f"wait; try again in {full.args[0]} s", kind="rate_limit_error", code="queue_full"),
                                  {"Retry-After": str(full.args[0])})
        if stream:
            events: asyncio.Queue = asyncio.Queue()
            # started here, not by the response: the place in the queue is given back even if the stream never starts
            server.keep(asyncio.create_task(answer_into(events, question, started)))
            return StreamingResponse(stream_events(events, bool(options.get("include_usage"))), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache"})
        try:
            answer, usage, deployment = await server.answer_in_thread(question)
        except Exception as error:
            return error_response(server_error(error), {"x-should-retry": "false"})
        finally:
            server.admission.release(started)
        return JSONResponse({"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion", "created": int(time.time()),
                             "model": server.model_name, "system_fingerprint": deployment.model_id,
                             "choices": [{"index": 0, "message": {"role": "assistant", "content": reply_text(answer)}, "logprobs": None,
                                          "finish_reason": "stop"}],
                             "usage": usage_body(usage), "memo": memo_body(answer, usage, deployment)})

    async def answer_into(events: asyncio.Queue, question: str, started: float) -> None:
        """Progress, then the answer or the error, into `events`; the place in the queue is held until the answer is
        done, even when the client left before."""
        loop = asyncio.get_running_loop()
        try:
            result = await server.answer_in_thread(question, lambda p: loop.call_soon_threadsafe(events.put_nowait, ("progress", p)))
            events.put_nowait(("answer", result))
        except Exception as error:
            events.put_nowait(("error", server_error(error)))
        finally:
            server.admission.release(started)

    async def stream_events(events: asyncio.Queue, include_usage: bool):
        completion_id, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())

        def chunk(delta: dict | None, finish: str | None = None, **extra) -> dict:
            choices = [] if delta is None else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
            return {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": server.model_name,
                    "choices": choices, **extra}

        def event(payload: dict) -> str:
            return f"data: {json.dumps(payload)}\n\n"

        yield event(chunk({"role": "assistant", "content": ""}))
        while True:
            try:
                kind, value = await asyncio.wait_for(events.get(), server.limits.keepalive_s)
            except TimeoutError:
                yield ": still working\n\n"
                continue
            if kind == "progress":
                yield event(chunk({}, memo_progress=value))
            elif kind == "error":
                yield event(error_body(value))
                break
            else:
                answer, usage, deployment = value
                yield event(chunk({"content": reply_text(answer)}, system_fingerprint=deployment.model_id))
                yield event(chunk({}, "stop", memo=memo_body(answer, usage, deployment)))
                if include_usage:
                    yield event(chunk(None, usage=usage_body(usage)))
                break
        yield "data: [DONE]\n\n"

    async def http_error(request, error: HTTPException):
        if error.status_code == 405:
            return error_response(RequestError(405, f"use {' or '.join(sorted((error.headers or {}).get('Allow', 'GET').split(', ')))} "
                                                    f"for {request.url.path}"), error.headers)
        if error.status_code == 404:
            return error_response(RequestError(404, f"no route {request.method} {request.url.path}", code="not_found"))
        return error_response(RequestError(error.status_code, str(error.detail)))

    async def unexpected(request, error: Exception):
        return error_response(server_error(error), {"x-should-retry": "false"})

    app = Starlette(routes=[
        Route("/health", health, methods=["GET"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/v1/models/{model_id:path}", model, methods=["GET"]),
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
    ], exception_handlers={HTTPException: http_error, Exception: unexpected})
    return RequireApiKey(app, server)


class RequireApiKey:
    """ASGI middleware: with a key set, every route but /health answers 401 to a request without it."""

    def __init__(self, app, server: ProtocolServer):
        self.app, self.server = app, server

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"] != "/health":
            from starlette.datastructures import Headers
            from starlette.responses import JSONResponse

            if not self.server.authorised(Headers(scope=scope)):
                error = RequestError(401, "a valid API key is required: send it as 'Authorization: Bearer <key>'", code="invalid_api_key")
                response = JSONResponse(error_body(error), status_code=401, headers={"WWW-Authenticate": "Bearer", "Connection": "close"})
                return await response(scope, receive, send)
        await self.app(scope, receive, send)
