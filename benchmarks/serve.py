"""Serving throughput: requests per second and p50/p95 latency of `memo serve` at 1, 4 and 8 concurrent clients,
against one-at-a-time serving (what a global lock gave) in the same run.

The executive is a scripted OpenAI-compatible server that answers each call after a fixed delay (a remote API's
latency); the memory is the embedded model (SmolLM2-135M-Instruct) in-process, behind one worker that batches the
memory turns of concurrent requests. Mode single: per request, two executive calls and one memory turn of three
questions. Both servers answer the same questions over HTTP with the openai client.

--baseline FILE sets this run's concurrent server beside the figures another run saved (the hand-written http.server
version's benchmarks/results/serve.json) as ratios: throughput at 8 clients and p95 latency, new over old.

    .venv/bin/python benchmarks/serve.py [--requests 16] [--executive-delay 0.2] [--quick] [--servers concurrent]
                                         [--baseline FILE] [--json FILE]
"""

import argparse
import json
import os
import platform
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from memo_pipelines.apps.batching import ModelWorker, Tally, shared_model  # noqa: E402
from memo_pipelines.apps.follow import Deployment, ModelSwitch  # noqa: E402
from memo_pipelines.apps.serve import ProtocolServer, ServeLimits  # noqa: E402
from memo_pipelines.llm.backends import LLMSpec, LocalChatModel, load_chat_model  # noqa: E402
from memo_pipelines.llm.embedded import embedded_model_dir  # noqa: E402
from memo_pipelines.protocol import ProtocolConfig  # noqa: E402
from tests.openai_stub import ScriptedOpenAI  # noqa: E402

SUBJECTS = ["the Kesby plant", "the Wren Building", "Quillfeather Labs", "the Petrel product", "the Tern product", "Odile Varga",
            "Ines Halloran", "the Heron project"]


def scripted_executive(delay_s: float):
    def reply(request: dict) -> dict:
        prompt = request["messages"][-1]["content"]
        if "atomic clues" in prompt:
            subject = next((s for s in SUBJECTS if s in prompt), "it")
            content = json.dumps({"clues": [subject], "sub_questions": [f"What is {subject}?", f"Who leads {subject}?"]})
        else:
            content = json.dumps({"answer": "see the facts", "facts_used": [1]})
        return {"sleep": delay_s, "content": content}

    return reply


def run_level(base_url: str, clients: int, requests: int) -> dict:
    import openai

    latencies, errors, lock = [], [], threading.Lock()
    questions = [f"What do we know about {SUBJECTS[i % len(SUBJECTS)]}?" for i in range(requests)]

    def client_loop(mine: list[str]) -> None:
        client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=600)
        for question in mine:
            started = time.perf_counter()
            try:
                client.chat.completions.create(model="memo", messages=[{"role": "user", "content": question}])
            except openai.OpenAIError as error:
                with lock:
                    errors.append(str(error))
                continue
            with lock:
                latencies.append(time.perf_counter() - started)

    threads = [threading.Thread(target=client_loop, args=(questions[c::clients],)) for c in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    latencies.sort()
    return {"clients": clients, "requests": len(latencies), "errors": len(errors), "wall_s": round(wall, 3),
            "requests_per_s": round(len(latencies) / wall, 3), "p50_s": round(statistics.median(latencies), 3),
            "p95_s": round(latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))], 3)}


def serve(memory: LocalChatModel, executive_url: str, max_active: int, stats: Tally) -> ProtocolServer:
    worker = ModelWorker(memory, "memory", stats)
    executive = load_chat_model(LLMSpec("openai", "scripted", executive_url, concurrency=16, max_retries=0))
    switch = ModelSwitch(Deployment("embedded", None, "benchmark", worker, close=worker.close), log=lambda message: None)
    return ProtocolServer(switch, shared_model(executive, "executive", stats), ProtocolConfig(mode="single", memory_max_new_tokens=24),
                          port=0, limits=ServeLimits(max_active=max_active, max_waiting=64)).start()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=16, help="requests per concurrency level and server")
    parser.add_argument("--executive-delay", type=float, default=0.2, help="seconds the scripted executive takes per call")
    parser.add_argument("--quick", action="store_true", help="one round: as many requests per level as clients")
    parser.add_argument("--servers", default="one_at_a_time,concurrent", help="which servers to run, comma-separated")
    parser.add_argument("--baseline", type=Path, action="append", default=[],
                        help="saved figures of another run to compare the concurrent server with (repeatable)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    servers = args.servers.split(",")

    memory = LocalChatModel(embedded_model_dir(ROOT / ".memo" / "work" / "embedded"))
    results = {}
    with ScriptedOpenAI(scripted_executive(args.executive_delay)) as executive:
        for name, max_active in [(n, m) for n, m in (("one_at_a_time", 1), ("concurrent", 8)) if n in servers]:
            stats = Tally()
            server = serve(memory, executive.base_url, max_active, stats)
            try:
                run_level(server.base_url, 1, 2)  # warm-up
                results[name] = [run_level(server.base_url, clients, clients if args.quick else args.requests) for clients in (1, 4, 8)]
                results[name + "_calls"] = stats.snapshot()
            finally:
                server.stop()
                server.switch.close_all()
    for name in servers:
        for level in results[name]:
            print(f"{name:14} {level['clients']} clients: {level['requests_per_s']:.2f} req/s, p50 {level['p50_s']:.2f} s, "
                  f"p95 {level['p95_s']:.2f} s, {level['errors']} errors")
    figures = {"p95_s": results["concurrent"][-1]["p95_s"]} if "concurrent" in results else {}
    if "concurrent" in results:
        calls = results["concurrent_calls"]
        print(f"concurrent: {calls.get('memory_calls', 0)} memory turns in {calls.get('memory_batches', 0)} batches")
    if "concurrent" in results and "one_at_a_time" in results:
        ratio = results["concurrent"][-1]["requests_per_s"] / results["one_at_a_time"][-1]["requests_per_s"]
        figures["throughput_ratio"] = round(ratio, 3)
        print(f"throughput at 8 clients: {ratio:.2f}x one-at-a-time")
    for baseline in args.baseline if "concurrent" in results else []:
        old, new = json.loads(baseline.read_text())["concurrent"][-1], results["concurrent"][-1]
        versus = {"baseline": baseline.resolve().relative_to(ROOT).as_posix(), "clients": new["clients"],
                  "throughput_ratio": round(new["requests_per_s"] / old["requests_per_s"], 3), "p95_ratio": round(new["p95_s"] / old["p95_s"], 3),
                  "baseline_requests_per_s": old["requests_per_s"], "baseline_p95_s": old["p95_s"]}
        figures.setdefault("versus_baseline", []).append(versus)
        print(f"against {baseline.name} at {new['clients']} clients: throughput {versus['throughput_ratio']:.2f}x, p95 {versus['p95_ratio']:.2f}x")
    figures.update({**results, "executive_delay_s": args.executive_delay, "quick": args.quick, "requests_per_level": args.requests,
                    "machine": platform.platform(), "cpus": os.cpu_count()})
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
