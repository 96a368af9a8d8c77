"""The sample corpus's reflections through the LLM form against a real OpenAI-compatible server (llama.cpp serving the
embedded SmolLM2-135M GGUF on loopback, llm/llamacpp.py), beside the grounded form with the in-process model.

Rows kept by step, drop reasons, generator calls and tokens, and wall time of each.

    .venv/bin/python benchmarks/llm_form_llamacpp.py [--json PATH] [--threads N] [--concurrency N] [--documents N]
"""

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from memo_pipelines.apps.settings import Settings  # noqa: E402
from memo_pipelines.corpus.formats import Unreadable  # noqa: E402
from memo_pipelines.corpus.snapshot import Document, extract_text  # noqa: E402
from memo_pipelines.llm.backends import LLMSpec, LocalChatModel, OpenAIChatModel  # noqa: E402
from memo_pipelines.llm.embedded import embedded_model_dir  # noqa: E402
from memo_pipelines.llm.llamacpp import LlamaCppServer  # noqa: E402
from memo_pipelines.reflections.synthesis import SynthesisConfig, synthesise_reflections  # noqa: E402

SAMPLE = ROOT / "memo_pipelines" / "sample_corpus"
API_KEY_ENV = "MEMO_BENCH_LLAMACPP_KEY"


def sample_documents() -> list[Document]:
    documents = []
    for path in sorted(SAMPLE.iterdir()):
        try:
            text = extract_text(path.name, path.read_bytes())
        except Unreadable:  # the scanned contract: quarantined by the snapshot, as in the pipeline
            continue
        documents.append(Document(path.name, f"landing/{path.name}", "etag", len(text), hashlib.sha256(text.encode()).hexdigest(), text))
    return documents


def run(form: str, documents: list[Document], generator, config: SynthesisConfig) -> dict:
    started = time.perf_counter()

    def progress(done: int, total: int) -> None:
        print(f"  {form}: {done}/{total} documents, {time.perf_counter() - started:.0f} s", flush=True)

    rows, stats = synthesise_reflections(documents, "v000001", generator, form, progress=progress, config=config)
    seconds = time.perf_counter() - started
    summary = stats.to_json()
    return {"form": form, "generator": generator.name, "rows": len(rows), "seconds": round(seconds, 1),
            "rows_by_step": dict(summary.get("kept_by_step", {})), "dropped": dict(stats.dropped),
            "generator_calls": stats.generator_calls, "tokens": dict(stats.tokens), "verified_share": stats.verified_share,
            "examples": [{"question": r["question"], "answer": r["answer"], "step": r["step"]} for r in rows[:5]]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path)
    parser.add_argument("--threads", type=int, default=2, help="llama.cpp threads")
    parser.add_argument("--concurrency", type=int, default=2, help="requests in flight (and server slots)")
    parser.add_argument("--documents", type=int, default=0, help="> 0: the first N sample documents only (the whole corpus takes over an hour on 2 cores)")
    args = parser.parse_args()
    documents = sample_documents()[: args.documents or None]
    config = SynthesisConfig()
    os.environ[API_KEY_ENV] = os.environ.get(API_KEY_ENV) or "memo-benchmark-key"
    results = {"documents": len(documents), "corpus": "memo_pipelines/sample_corpus", "cpu_count": os.cpu_count()}
    with LlamaCppServer(api_key=os.environ[API_KEY_ENV], threads=args.threads, parallel=args.concurrency) as server:
        generator = OpenAIChatModel(LLMSpec("openai", server.alias, server.base_url, api_key_env=API_KEY_ENV, timeout_s=300.0,
                                            max_retries=1, concurrency=args.concurrency))
        llm_config = SynthesisConfig(document_workers=args.concurrency)
        results["llm_json"] = run("llm_json", documents, generator, llm_config)
        results["llm_json"]["server"] = f"llama.cpp (xllamacpp), {args.threads} threads, {args.concurrency} slots"
    local = LocalChatModel(embedded_model_dir(Settings.from_env().work_dir / "embedded"), device="cpu")
    results["grounded"] = run("grounded", documents, local, config)
    for form in ("llm_json", "grounded"):
        figures = results[form]
        print(f"{form:<9} {figures['rows']:>4} rows  {figures['seconds']:>7} s  {figures['generator_calls']:>4} calls  "
              f"by step {figures['rows_by_step']}")
        print(f"          dropped: {figures['dropped']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
