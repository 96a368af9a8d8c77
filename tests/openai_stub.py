"""A scripted OpenAI-compatible HTTP server standing in for a remote LLM in tests.

    with ScriptedOpenAI(lambda req: "42") as srv:
        client = openai.OpenAI(base_url=srv.base_url, api_key="test")

The responder gets the parsed JSON body of POST /v1/chat/completions or /v1/completions
and returns the reply text, {"status": 500} for an HTTP error, or
{"sleep": seconds, "content": text} to answer late (sleep may be combined with status).

Like vLLM with VLLM_ALLOW_RUNTIME_LORA_UPDATING=True, POST /v1/load_lora_adapter {"lora_name", "lora_path"} and
/v1/unload_lora_adapter {"lora_name"} add and remove adapters (`adapters`, `adapter_calls`), which /v1/models lists
after the base model.
"""
from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

Responder = Callable[[dict], "str | dict"]


def _count_tokens(value) -> int:
    # rough whitespace count; content may be a string or a list of content parts
    if isinstance(value, str):
        return len(value.split())
    return len(json.dumps(value).split()) if value is not None else 0


class ScriptedOpenAI:
    def __init__(self, responder: Responder, model: str = "scripted-model"):
        self.responder = responder
        self.model = model
        self._requests: list[dict] = []
        self._exchanges: list[tuple[dict, dict]] = []
        self.adapters: dict[str, str] = {}  # lora_name -> lora_path
        self.adapter_calls: list[tuple[str, dict]] = []
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def requests(self) -> list[dict]:
        """Parsed bodies of all completion requests so far (a snapshot copy)."""
        with self._lock:
            return list(self._requests)

    @property
    def base_url(self) -> str:
        assert self._httpd is not None, "server not started"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    @property
    def exchanges(self) -> list[tuple[dict, dict]]:
        """(request body, response body) of every completion answered with 200 so far (a snapshot copy)."""
        with self._lock:
            return list(self._exchanges)

    def start(self) -> "ScriptedOpenAI":
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._httpd.daemon_threads = True  # a sleeping handler must not block shutdown
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join(timeout=5)
            self._httpd = self._thread = None

    def __enter__(self) -> "ScriptedOpenAI":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _record(self, body: dict) -> None:
        with self._lock:
            self._requests.append(body)

    def _completion(self, path: str, body: dict, content: str) -> dict:
        chat = path.endswith("/chat/completions")
        if chat:
            prompt = sum(_count_tokens(m.get("content")) for m in body.get("messages", []))
            choice = {"index": 0, "message": {"role": "assistant", "content": content},
                      "logprobs": None, "finish_reason": "stop"}
        else:
            prompt = _count_tokens(body.get("prompt"))
            choice = {"index": 0, "text": content, "logprobs": None, "finish_reason": "stop"}
        completion = _count_tokens(content)
        return {
            "id": f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion" if chat else "text_completion",
            "created": int(time.time()),
            "model": body.get("model") or self.model,
            "choices": [choice],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                      "total_tokens": prompt + completion},
        }


def _make_handler(server: ScriptedOpenAI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep test output quiet
            pass

        def _send(self, status: int, payload: dict) -> None:
            data = json.dumps(payload).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # client gave up (timeout test); nothing to answer

        def _error(self, status: int, message: str) -> None:
            self._send(status, {"error": {"message": message, "type": "scripted_error",
                                          "param": None, "code": status}})

        def do_GET(self):
            if self.path.rstrip("/") == "/v1/models":
                with server._lock:
                    names = [server.model, *server.adapters]
                self._send(200, {"object": "list", "data": [
                    {"id": name, "object": "model", "created": 0, "owned_by": "tests"} for name in names]})
            else:
                self._error(404, f"no route GET {self.path}")

        def _adapter(self, path: str) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            name = body.get("lora_name")
            with server._lock:
                server.adapter_calls.append((path.rsplit("/", 1)[1], body))
                if path.endswith("/load_lora_adapter"):
                    status = 400 if name in server.adapters else 200
                    if status == 200:
                        server.adapters[name] = body["lora_path"]
                else:
                    status = 200 if server.adapters.pop(name, None) is not None else 404
            if status != 200:
                return self._error(status, f"adapter {name!r}: {'already loaded' if status == 400 else 'not loaded'}")
            data = f"Success: LoRA adapter '{name}' {'added' if path.endswith('/load_lora_adapter') else 'removed'} successfully.".encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):
            path = self.path.split("?")[0].rstrip("/")
            if path in ("/v1/load_lora_adapter", "/v1/unload_lora_adapter"):
                return self._adapter(path)
            if path not in ("/v1/chat/completions", "/v1/completions"):
                return self._error(404, f"no route POST {self.path}")
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            except ValueError as e:
                return self._error(400, f"bad JSON: {e}")
            server._record(body)
            try:
                reply = server.responder(body)
            except Exception as e:  # surface responder bugs as a server error
                return self._error(500, f"responder raised {type(e).__name__}: {e}")
            if isinstance(reply, dict):
                time.sleep(reply.get("sleep", 0))
                if "status" in reply:
                    return self._error(reply["status"], reply.get("message", "scripted error"))
                reply = reply.get("content", "")
            completion = server._completion(path, body, reply)
            with server._lock:
                server._exchanges.append((body, completion))
            self._send(200, completion)

    return Handler


def serve_model_dir(argv: list[str] | None = None) -> None:
    """A stand-in for `vllm serve`: a real local model directory behind the OpenAI API, greedy, on loopback.

        python -m tests.openai_stub --model-dir DIR --served-model-name NAME --port PORT
    """
    import argparse

    from memo_pipelines.llm.backends import LocalChatModel

    parser = argparse.ArgumentParser()
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--served-model-name", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    model, lock = LocalChatModel(args.model_dir), threading.Lock()

    def answer(body: dict) -> str | dict:
        if body.get("model") != args.served_model_name:
            return {"status": 404, "message": f"The model `{body.get('model')}` does not exist."}
        with lock:
            return model.chat([body["messages"]], max_new_tokens=body.get("max_tokens") or 64)[0]

    stub = ScriptedOpenAI(answer, model=args.served_model_name)
    stub._httpd = ThreadingHTTPServer(("127.0.0.1", args.port), _make_handler(stub))
    stub._httpd.daemon_threads = True
    print(f"serving {args.model_dir} as {args.served_model_name} on port {args.port}", flush=True)
    stub._httpd.serve_forever()


if __name__ == "__main__":
    serve_model_dir()
