"""How a promoted memory becomes a `Deployment` that `memo serve` answers with, chosen by name.

    local   fetched from the registry and loaded in this process (transformers), behind a ModelWorker
    launch  fetched, then served by a process of its own that a command starts (`vllm serve {model_dir} ...`): the
            new one starts beside the old one, takes over when it lists the model, and the old one is stopped when its
            last request is done (blue/green; works with the full merged models the pipeline registers)
    lora    loaded as a LoRA adapter on a running OpenAI-compatible server through vLLM's runtime adapter routes
            (POST /v1/load_lora_adapter, /v1/unload_lora_adapter; vLLM started with --enable-lora and
            VLLM_ALLOW_RUNTIME_LORA_UPDATING=True); for registry models that are adapters of the model the server serves
"""

import dataclasses
import json
import shlex
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from typing import Callable

from memo_pipelines.apps.batching import ModelWorker, Tally
from memo_pipelines.apps.follow import Deployment, promoted_move


def _sources(registry, model_id: str):
    from memo_pipelines.protocol import SourceIndex

    return SourceIndex.from_registry(registry, model_id)


def local_loader(registry, stats: Tally, window_s: float = 0.005, **_) -> Callable[[dict], Deployment]:
    """Deployments of registry models loaded in-process; closing one drops the model."""
    from memo_pipelines.llm.backends import LocalChatModel

    def load(pointer: dict) -> Deployment:
        model_id = pointer["model_id"]
        worker = ModelWorker(LocalChatModel(registry.fetch(model_id)), "memory", stats, window_s)
        return Deployment(model_id, *promoted_move(pointer), worker, _sources(registry, model_id), close=worker.close,
                          memory_label=f"local:{model_id}")

    return load


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _post_json(url: str, payload: dict, timeout_s: float) -> str:
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as reply:
            return reply.read().decode(errors="replace")
    except urllib.error.HTTPError as error:
        raise RuntimeError(f"POST {url} answered {error.code}: {error.read().decode(errors='replace')[:500]}") from None


def lists_model(base_url: str, model_id: str, timeout_s: float = 5.0) -> bool:
    """Whether the OpenAI-compatible server at base_url answers GET /models with model_id among its models."""
    try:
        with urllib.request.urlopen(f"{base_url.rstrip('/')}/models", timeout=timeout_s) as reply:
            return any(m.get("id") == model_id for m in json.loads(reply.read()).get("data", []))
    except (OSError, ValueError):
        return False


def launch_loader(registry, stats: Tally, memory_spec, command: str, ready_timeout_s: float = 900.0, **_) -> Callable[[dict], Deployment]:
    """Deployments served by a process per model: `command` with {model_dir}, {model_id} and {port} filled in."""
    from memo_pipelines.llm.backends import OpenAIChatModel
    from memo_pipelines.processes import stop_process_group

    def load(pointer: dict) -> Deployment:
        model_id = pointer["model_id"]
        model_dir, port = registry.fetch(model_id), _free_port()
        values = {"model_dir": shlex.quote(str(model_dir)), "model_id": shlex.quote(model_id), "port": port}
        process = subprocess.Popen(shlex.split(command.format(**values)), start_new_session=True)
        base_url = f"http://127.0.0.1:{port}/v1"
        ends = time.monotonic() + ready_timeout_s
        while not lists_model(base_url, model_id):
            if process.poll() is not None or time.monotonic() > ends:
                stop_process_group(process.pid, child=process)
                why = f"exited with {process.returncode}" if process.returncode is not None else f"was not ready in {ready_timeout_s:g} s"
                raise RuntimeError(f"the memory server for {model_id} {why}: {command.format(**values)}")
            time.sleep(0.5)
        memory = OpenAIChatModel(dataclasses.replace(memory_spec, backend="openai", model=model_id, base_url=base_url))
        return Deployment(model_id, *promoted_move(pointer), memory, _sources(registry, model_id),
                          close=lambda: stop_process_group(process.pid, grace_s=30, child=process), memory_label=f"{model_id} at {base_url}")

    return load


def lora_loader(registry, stats: Tally, memory_spec, lora_path: str = "{model_dir}", timeout_s: float = 300.0, **_) -> Callable[[dict], Deployment]:
    """Deployments that are LoRA adapters loaded on the memory endpoint at memory_spec.base_url, named by model id.
    `lora_path` is where that server reads the adapter ({model_dir}: this machine's copy; a shared volume elsewhere)."""
    from memo_pipelines.llm.backends import OpenAIChatModel

    base_url = memory_spec.base_url.rstrip("/")
    # deployments using each adapter, and the adapters this server loaded: a rollback may name an adapter whose older
    # deployment is still finishing requests, and only the last user of an adapter we loaded unloads it
    users, loaded_here, lock = Counter(), set(), threading.Lock()

    def release(model_id: str) -> None:
        with lock:
            users[model_id] -= 1
            unload = users[model_id] == 0 and model_id in loaded_here
            if unload:
                loaded_here.discard(model_id)
        if unload:
            _post_json(f"{base_url}/unload_lora_adapter", {"lora_name": model_id}, timeout_s)

    def load(pointer: dict) -> Deployment:
        model_id = pointer["model_id"]
        model_dir = registry.fetch(model_id)
        if not (model_dir / "adapter_config.json").exists():
            raise RuntimeError(f"{model_id} is a full model, not a LoRA adapter (no adapter_config.json): serve it with --memory-launch")
        with lock:
            if users[model_id] == 0 and not lists_model(base_url, model_id):
                _post_json(f"{base_url}/load_lora_adapter", {"lora_name": model_id, "lora_path": lora_path.format(model_dir=model_dir, model_id=model_id)},
                           timeout_s)
                loaded_here.add(model_id)
            users[model_id] += 1
        memory = OpenAIChatModel(dataclasses.replace(memory_spec, backend="openai", model=model_id))
        return Deployment(model_id, *promoted_move(pointer), memory, _sources(registry, model_id), close=lambda: release(model_id),
                          memory_label=f"adapter {model_id} at {base_url}")

    return load


LOADERS = {"local": local_loader, "launch": launch_loader, "lora": lora_loader}
