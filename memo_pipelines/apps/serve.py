"""An OpenAI-compatible chat endpoint in front of the protocol: any OpenAI client can use the memory-augmented executive.

POST /v1/chat/completions answers the last user message through the protocol (the memory is stateless, so earlier
turns are not sent to it); the reply's content is the answer followed by its sources, and the whole protocol result
rides along under the extra key "memo". "stream": true gets the same reply as server-sent events. GET /v1/models lists
the one model. Questions are answered one at a time: local models are not shared between threads.
"""

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from memo_pipelines.protocol import Protocol


def reply_text(answer) -> str:
    return answer.answer + (f"\n\nSources: {', '.join(answer.sources)}" if answer.sources else "")


class ProtocolServer:
    def __init__(self, protocol: Protocol, model_name: str = "memo", host: str = "127.0.0.1", port: int = 8000):
        self.protocol, self.model_name = protocol, model_name
        self._lock = threading.Lock()
        self.httpd = ThreadingHTTPServer((host, port), _handler(self))
        self.httpd.daemon_threads = True

    @property
    def base_url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def answer(self, question: str):
        with self._lock:
            return self.protocol.ask(question)

    def serve_forever(self) -> None:
        self.httpd.serve_forever()

    def start(self) -> "ProtocolServer":
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _last_user_message(body: dict) -> str | None:
    for message in reversed(body.get("messages") or []):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):  # content parts: keep the text ones
                content = " ".join(part.get("text", "") for part in content if isinstance(part, dict))
            return content if isinstance(content, str) and content.strip() else None
    return None


def _handler(server: ProtocolServer):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _send(self, status: int, payload: dict) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _error(self, status: int, message: str) -> None:
            self._send(status, {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": status}})

        def do_GET(self):
            if self.path.split("?")[0].rstrip("/") == "/v1/models":
                return self._send(200, {"object": "list", "data": [
                    {"id": server.model_name, "object": "model", "created": 0, "owned_by": "memo-pipelines"}]})
            self._error(404, f"no route GET {self.path}")

        def do_POST(self):
            if self.path.split("?")[0].rstrip("/") != "/v1/chat/completions":
                return self._error(404, f"no route POST {self.path}")
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            except ValueError as error:
                return self._error(400, f"bad JSON: {error}")
            question = _last_user_message(body)
            if question is None:
                return self._error(400, "the request has no user message with text")
            answer = server.answer(question)
            completion_id, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
            message = {"role": "assistant", "content": reply_text(answer)}
            if body.get("stream"):
                return self._stream(completion_id, created, message)
            self._send(200, {"id": completion_id, "object": "chat.completion", "created": created, "model": server.model_name,
                             "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}],
                             "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
                             "memo": answer.to_json()})

        def _stream(self, completion_id: str, created: int, message: dict) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.end_headers()
            for delta, finish in ((message, None), ({}, "stop")):
                chunk = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": server.model_name,
                         "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()

    return Handler
