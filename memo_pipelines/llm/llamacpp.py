"""llama.cpp's OpenAI-compatible server on the CPU (the prebuilt `xllamacpp` wheel), serving a GGUF file as is, in a
process of its own: the embedded SmolLM2-135M-Instruct by default, or any GGUF.

    python -m memo_pipelines.llm.llamacpp --port 8080 --api-key-env MEMO_LLAMACPP_KEY
    memo ask "..." --executive openai --executive-model smollm2-135m-instruct \\
        --executive-base-url http://127.0.0.1:8080/v1        # with OPENAI_API_KEY set to the same key

It serves /v1/chat/completions (streaming, `response_format` with a JSON schema through its own grammar), /v1/models
and /health; it binds loopback unless told otherwise, and refuses requests without the key when one is set.
"""

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from memo_pipelines.llm.embedded import EMBEDDED_NAME, GGUF_FILE, gguf_dir


def embedded_gguf() -> Path:
    return gguf_dir() / GGUF_FILE


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def serve(model: Path, host: str, port: int, api_key: str = "", alias: str = EMBEDDED_NAME, threads: int = 1,
          parallel: int = 2, context: int = 4096) -> None:
    """Serve until SIGTERM or SIGINT. `context` is shared by the `parallel` slots."""
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = str(model)
    params.model_alias = {alias}
    params.hostnames = [host]
    params.port = port
    params.api_keys = [api_key] if api_key else []
    params.n_ctx = context
    params.n_parallel = parallel
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    params.verbosity = 1  # errors and warnings, not a line per slot event
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    server = xllamacpp.Server(params)
    print(f"llama.cpp serving {model.name} as {alias} at {server.listening_address}/v1", flush=True)
    stop.wait()
    del server


class LlamaCppServer:
    """The server above in a child process, for tests and benchmarks: start() waits for /health; stop() ends it;
    kill() ends it at once, as a crash would."""

    def __init__(self, model: Path | None = None, port: int | None = None, api_key: str = "", alias: str = EMBEDDED_NAME,
                 threads: int = 1, parallel: int = 2, log: Path | None = None):
        self.model, self.port, self.api_key, self.alias = model or embedded_gguf(), port or free_port(), api_key, alias
        self.threads, self.parallel, self.log = threads, parallel, log
        self.process: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, timeout_s: float = 60.0) -> "LlamaCppServer":
        env = {**os.environ, "MEMO_LLAMACPP_API_KEY": self.api_key}
        command = [sys.executable, "-m", "memo_pipelines.llm.llamacpp", "--model", str(self.model), "--port", str(self.port),
                   "--alias", self.alias, "--threads", str(self.threads), "--parallel", str(self.parallel),
                   "--api-key-env", "MEMO_LLAMACPP_API_KEY"]
        output = open(self.log, "ab") if self.log else subprocess.DEVNULL
        self.process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"llama.cpp server exited with {self.process.returncode} before it was ready")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as reply:
                    if reply.status == 200:
                        return self
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"llama.cpp server not ready on port {self.port} within {timeout_s} s")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> "LlamaCppServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="llama.cpp's OpenAI-compatible server for a GGUF file (default: the embedded model)")
    parser.add_argument("--model", type=Path, help="a GGUF file (default: the embedded SmolLM2-135M-Instruct)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--alias", default=EMBEDDED_NAME, help="the model name clients ask for")
    parser.add_argument("--api-key-env", default="", help="environment variable holding the API key clients must send")
    parser.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 2) // 2))
    parser.add_argument("--parallel", type=int, default=2, help="requests decoded at once")
    parser.add_argument("--context", type=int, default=4096, help="context tokens, shared by the parallel slots")
    args = parser.parse_args(argv)
    api_key = os.environ.get(args.api_key_env, "") if args.api_key_env else ""
    if args.api_key_env and not api_key:
        parser.error(f"--api-key-env {args.api_key_env}: the variable is not set")
    serve(args.model or embedded_gguf(), args.host, args.port, api_key, args.alias, args.threads, args.parallel, args.context)


if __name__ == "__main__":
    main()
