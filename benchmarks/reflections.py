"""Reflection coverage and precision on MuSiQue: the five-step synthesis against step 1 alone, one generator, one run.

Corpus: the supporting passages of the first N questions of ../shared/data/musique (a fixed subset, file order) plus
D distractor passages per question (the first non-supporting ones). Figures per configuration:
  coverage   share of gold single-hop sub-question answers (question_decomposition) that appear, word-bounded, in the
             answer of some reflection; "cited" counts only reflections that cite the supporting passage;
  precision  share of reflections (probes aside) whose key answer and answer are supported by their source passages
             (key answer contained in the sources, at most a third of the answer's content words missing from them);
  cost       generator calls, tokens, wall seconds; and a re-run of the five steps from the cache.

    .venv/bin/python benchmarks/reflections.py --quick                      # embedded generator, under a minute
    .venv/bin/python benchmarks/reflections.py --questions 20 --json benchmarks/results/reflections.json
    .venv/bin/python benchmarks/reflections.py --generator-base-url URL --generator-model NAME --api-key-env VAR
"""

import argparse
import dataclasses
import hashlib
import json
import os
import platform
import re
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from memo_pipelines.corpus.snapshot import Document  # noqa: E402
from memo_pipelines.evaluation.metrics import recalled  # noqa: E402
from memo_pipelines.llm.backends import LLMSpec, load_chat_model  # noqa: E402
from memo_pipelines.reflections.text import content_tokens  # noqa: E402
from memo_pipelines.reflections.synthesis import SynthesisConfig, synthesise_reflections  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "musique" / "musique_train.json"


class MemoryCache:
    def __init__(self):
        self.values = {}

    def get_json(self, key, default=None):
        return json.loads(self.values[key]) if key in self.values else default

    def put_json(self, key, value):
        self.values[key] = json.dumps(value)
        return key


def load_corpus(path: Path, questions: int, distractors: int) -> tuple[list[Document], list[dict]]:
    """Documents (one per distinct passage) and the gold single-hop facts: {answer, doc_id}."""
    docs: dict[str, Document] = {}
    gold = []

    def doc_for(paragraph: dict) -> str:
        text = f"# {paragraph['title']}\n\n{paragraph['paragraph_text'].strip()}"
        digest = hashlib.sha256(text.encode()).hexdigest()
        slug = re.sub(r"[^a-z0-9]+", "_", paragraph["title"].lower()).strip("_")[:40]
        doc_id = f"{slug}-{digest[:8]}.md"
        docs.setdefault(doc_id, Document(doc_id, f"landing/{doc_id}", digest[:16], len(text), digest, text))
        return doc_id

    for item in json.loads(path.read_text())[:questions]:
        paragraphs = {p["idx"]: p for p in item["paragraphs"]}
        for hop in item["question_decomposition"]:
            gold.append({"question": hop["question"], "answer": hop["answer"], "doc_id": doc_for(paragraphs[hop["paragraph_support_idx"]])})
        for paragraph in [p for p in item["paragraphs"] if not p["is_supporting"]][:distractors]:
            doc_for(paragraph)
    return list(docs.values()), gold


def supported(row: dict, sources: str) -> bool:
    answer_tokens = content_tokens(row["answer"])
    missing = answer_tokens - content_tokens(sources)
    # an entity summary's key answer is its whole answer, sentences joined from several places: words decide
    key_stated = recalled(sources, row["key_answer"]) or row["key_answer"] == row["answer"]
    return key_stated and len(missing) <= len(answer_tokens) // 3


def score(rows: list[dict], documents: list[Document], gold: list[dict]) -> dict:
    text = {d.doc_id: d.text for d in documents}
    facts = [r for r in rows if r["step"] != "unanswerable"]
    covered = [any(recalled(r["answer"], g["answer"]) for r in facts) for g in gold]
    cited = [any(g["doc_id"] in r["source_doc_ids"] and recalled(r["answer"], g["answer"]) for r in facts) for g in gold]
    precise = [supported(r, "\n".join(text[d] for d in r["source_doc_ids"])) for r in facts]
    by_step = Counter(r["step"] for r in rows)
    precise_by_step = Counter(r["step"] for r, ok in zip(facts, precise) if ok)
    return {
        "coverage": round(sum(covered) / len(gold), 4),
        "coverage_cited": round(sum(cited) / len(gold), 4),
        "precision": round(sum(precise) / max(1, len(facts)), 4),
        "reflections": len(rows),
        "by_step": dict(by_step),
        "precision_by_step": {s: round(precise_by_step[s] / n, 4) for s, n in by_step.items() if s != "unanswerable"},
    }


def run(name, documents, gold, model, strategy, config, cache=None) -> dict:
    start = time.perf_counter()
    rows, stats = synthesise_reflections(documents, "v000001", model, strategy, cache, config=config)
    seconds = time.perf_counter() - start
    figures = stats.to_json()
    return {"name": name, **score(rows, documents, gold), "seconds": round(seconds, 1), "generator_calls": figures["generator_calls"],
            "tokens": sum(figures["tokens"].get(k, 0) for k in ("prompt_tokens", "completion_tokens")),
            "cache_hits": figures["cache_hits"], "verification": figures["verification"],
            "dropped_by_reason": figures["dropped_by_reason"], "examples": {s: next(([r["question"], r["answer"]] for r in rows if r["step"] == s), None)
                                                                            for s in figures["kept_by_step"]}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=20, help="the first N MuSiQue questions")
    parser.add_argument("--distractors", type=int, default=2, help="non-supporting passages per question")
    parser.add_argument("--generator-base-url", default="", help="an OpenAI-compatible endpoint; default: the embedded model")
    parser.add_argument("--generator-model", default="", help="served model name (endpoint) or model directory (embedded)")
    parser.add_argument("--api-key-env", default="OPENAI_API_KEY")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--strategy", default="auto", choices=["auto", "grounded", "llm_json"])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--phrased-per-sentence", type=int, default=3, help="grounded: spans per sentence the generator phrases")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads for the embedded generator (0: torch's default)")
    parser.add_argument("--quick", action="store_true", help="1 question, 1 distractor, 1 phrased span a sentence: a smoke run")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if args.quick:
        args.questions, args.distractors, args.phrased_per_sentence = 1, 1, 1

    documents, gold = load_corpus(args.data, args.questions, args.distractors)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)  # on a loaded shared machine one thread beats two fighting for a core
    if args.generator_base_url:
        spec = LLMSpec("openai", args.generator_model, args.generator_base_url, args.api_key_env, concurrency=args.concurrency)
        model = load_chat_model(spec)
    else:
        from memo_pipelines.llm.embedded import embedded_model_dir
        from memo_pipelines.apps.settings import Settings

        model = load_chat_model(LLMSpec("local", args.generator_model), embedded_model_dir(Settings.from_env().work_dir / "embedded"))
    strategy = args.strategy if args.strategy != "auto" else ("grounded" if not args.generator_base_url else "llm_json")
    print(f"{len(documents)} passages ({args.questions} questions, {args.distractors} distractors each), {len(gold)} gold sub-answers; "
          f"generator {model.name}, strategy {strategy}")

    workers = args.concurrency if args.generator_base_url else 1
    five = SynthesisConfig(phrased_per_sentence=args.phrased_per_sentence, document_workers=workers)
    step1 = dataclasses.replace(five, steps=("fact_extraction",), entity_summaries=False)
    # the five steps take step 1 from the cache the step-1 run filled; their cost below includes step 1's
    cache = MemoryCache()
    results = [run("step 1 only", documents, gold, model, strategy, step1, cache),
               run("five steps", documents, gold, model, strategy, five, cache),
               run("five steps, re-run from cache", documents, gold, model, strategy, five, cache)]
    a, b = results[0], results[1]
    for key in ("generator_calls", "tokens", "seconds"):
        b[key] = round(a[key] + b[key], 1)
    header = f"{'configuration':32} {'coverage':>8} {'cited':>6} {'precision':>9} {'rows':>6} {'calls':>6} {'tokens':>8} {'seconds':>8}"
    print(header)
    for r in results:
        print(f"{r['name']:32} {r['coverage']:8.3f} {r['coverage_cited']:6.3f} {r['precision']:9.3f} {r['reflections']:6d} "
              f"{r['generator_calls']:6d} {r['tokens']:8d} {r['seconds']:8.1f}")
    ratio = lambda key: round(b[key] / a[key], 3) if a[key] else None  # noqa: E731
    ratios = {"coverage_five_over_step1": ratio("coverage"), "precision_five_over_step1": ratio("precision"),
              "reflections_five_over_step1": ratio("reflections"), "calls_five_over_step1": ratio("generator_calls"),
              "seconds_five_over_step1": ratio("seconds"), "rerun_seconds_over_first_run": round(results[2]["seconds"] / max(b["seconds"], 1e-9), 3)}
    print("five steps / step 1: " + ", ".join(f"{k.split('_')[0]} {v}" for k, v in ratios.items() if "five" in k)
          + f"; re-run from cache / first run: {ratios['rerun_seconds_over_first_run']} of the time")
    print("five steps, reflections by step:", b["by_step"], "precision by step:", b["precision_by_step"])
    if args.json:
        import torch
        import transformers

        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "command": " ".join(["benchmarks/reflections.py", *sys.argv[1:]]),
            "config": {"threads": args.threads, "questions": args.questions, "distractors": args.distractors, "passages": len(documents), "gold_sub_answers": len(gold),
                       "strategy": strategy, "generator": model.name, "five_steps": five.__dict__ | {"steps": list(five.steps)}},
            "results": results, "ratios": ratios,
            "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
            "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        }, indent=2))


if __name__ == "__main__":
    main()
