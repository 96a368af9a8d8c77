"""The update strategies side by side (continue, merge, retrain) over K versions of MuSiQue single-hop facts.

Each gold single-hop fact of MuSiQue (its #k placeholders filled with the earlier hops' gold answers) is one document
of one line; a seeded sample of K x N facts lands in K versions of N. From version 3 on, every other version also
deletes one earlier document and rewrites another with a new answer (the answer of a fact outside the sample), the
way the landing sensor records them (manifest `deleted`, a new ETag). Every strategy runs the library's own stages on
a local SeaweedFS bucket: train_memory_adapter with UpdateConfig(strategy=...), merge_memory_model,
evaluate_memory_model (open gates: the benchmark reports, it does not gate) and promote_version. The reflection and
probe stages are replaced by the facts themselves (MuSiQue gives one phrasing per fact, so each fact's probe is its
own question): the R matrix says which facts the weights hold, not how well a reworded question is answered.

Printed per strategy: the R matrix (recall of version k's live facts after update v), ACC, BWT, cumulative wall time
of training and merging and its ratio to retrain, rewrite accuracy (a rewritten fact's new value given after the
last version) and the deleted-fact rate (share of deleted documents' old answers still given).

    .venv/bin/python benchmarks/incremental_update.py --quick --json /tmp/incremental_quick.json
        # tiny random Llama, 4 versions of 2 facts: a smoke run of every stage and strategy
    .venv/bin/python benchmarks/incremental_update.py --versions 8 --facts-per-version 6 --json benchmarks/results/incremental_update.json
        # SmolLM2-135M (embedded)
"""

import argparse
import hashlib
import json
import os
import platform
import random
import shutil
import signal
import sys
import tempfile
import time
import uuid
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TQDM_DISABLE", "1")

from benchmarks.continual_eval import CLEANUPS, CREDENTIALS, OPEN_GATES, terminated  # noqa: E402
from memo_pipelines.evaluation.card import Gates  # noqa: E402
from memo_pipelines.qa import ask_memory, normalise, recalled  # noqa: E402
from memo_pipelines.reflections.probe_rules import probe_row  # noqa: E402
from memo_pipelines.llm.backends import LocalChatModel  # noqa: E402
from memo_pipelines.memory.merging import MergeConfig  # noqa: E402
from memo_pipelines.memory.training import TrainConfig  # noqa: E402
from memo_pipelines.evaluation.candidate import ProtocolEvalConfig, evaluate_memory_model  # noqa: E402
from memo_pipelines.memory.strategies import UpdateConfig  # noqa: E402
from memo_pipelines.memory.update import library_versions, merge_memory_model, train_memory_adapter  # noqa: E402
from memo_pipelines.storage.workspace import Workspace  # noqa: E402
from memo_pipelines.storage.layout import LANDING_PREFIX, version_key  # noqa: E402
from memo_pipelines.storage.objectstore import ObjectStore, make_s3_client  # noqa: E402
from memo_pipelines.storage.registry import ModelRegistry  # noqa: E402
from memo_pipelines.storage.seaweed import SeaweedServer, free_s3_port  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "musique" / "musique_train.json"
STRATEGY_NAMES = ("retrain", "continue", "merge")  # retrain first: the others' cost ratios need it


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
            if "#" not in question and key not in seen and hop["answer"].strip():
                seen.add(key)
                facts.append({"question": question.strip(), "answer": hop["answer"].strip()})
    return facts


def fact_rows(fact: dict, doc_id: str, version: str) -> tuple[dict, dict]:
    """The fact as the reflection row it trains and the probe row it is scored by."""
    row = {"id": hashlib.sha1(f"{doc_id}{fact['answer']}".encode()).hexdigest()[:16], "question": fact["question"], "answer": f"{fact['answer']}.",
           "key_answer": fact["answer"], "step": "fact_extraction", "source_doc_ids": [doc_id], "version": version}
    return row, probe_row(fact["question"], fact["answer"], "fact", "trained_question", [doc_id], version)


def plan_versions(facts: list[dict], versions: int, per_version: int, seed: int) -> list[dict]:
    """[{"landed": {doc_id: fact}, "deleted": [doc_id], "rewritten": {doc_id: new fact}}] per version, seeded."""
    rng = random.Random(seed)
    sample = rng.sample(facts, versions * per_version + versions)
    spare = sample[versions * per_version:]  # answers for rewrites
    plan, live = [], {}
    for k in range(versions):
        landed = {f"fact-{k}-{i}.md": fact for i, fact in enumerate(sample[k * per_version:(k + 1) * per_version])}
        deleted, rewritten = [], {}
        if k >= 2 and k % 2 == 0:
            old = sorted(live)
            doomed, changed = rng.sample(old, 2)
            deleted = [doomed]
            rewritten = {changed: {"question": live[changed]["question"], "answer": spare[k]["answer"], "old_answer": live[changed]["answer"]}}
            del live[doomed]
        live.update(landed)
        live.update({d: {"question": f["question"], "answer": f["answer"]} for d, f in rewritten.items()})
        plan.append({"landed": landed, "deleted": deleted, "rewritten": rewritten})
    return plan


def land(ws: Workspace, version: str, step: dict) -> None:
    """The version's documents, manifest, reflections and probes, as the landing sensor and the stages write them."""
    objects, rows, probes = [], [], []
    for doc_id, fact in {**step["landed"], **step["rewritten"]}.items():
        body = f"{fact['question']} {fact['answer']}.\n".encode()
        etag = ws.store.put_bytes(LANDING_PREFIX + doc_id, body)
        objects.append({"key": LANDING_PREFIX + doc_id, "etag": etag, "size": len(body)})
        row, probe = fact_rows(fact, doc_id, version)
        rows.append(row)
        probes.append(probe)
    for doc_id in step["deleted"]:
        ws.store.delete(LANDING_PREFIX + doc_id)
    ws.store.put_json(version_key(version, "manifest.json"), {"version": version, "objects": objects, "deleted": [LANDING_PREFIX + d for d in step["deleted"]]})
    ws.store.put_jsonl(version_key(version, "reflections.jsonl"), rows)
    ws.store.put_jsonl(version_key(version, "probes.jsonl"), probes)


def run_strategy(name: str, args, plan: list[dict], base_id: str, base_dir: Path, endpoint: str, work: Path) -> dict:
    client = make_s3_client(endpoint, CREDENTIALS["AWS_ACCESS_KEY_ID"], CREDENTIALS["AWS_SECRET_ACCESS_KEY"])
    store = ObjectStore(client, f"bench-{name}-{uuid.uuid4().hex[:6]}")
    store.ensure_bucket()
    ws = Workspace(store, ModelRegistry(store, work / name / "models"), work / name, LANDING_PREFIX)
    ws.registry.ensure_base(base_id, base_dir)
    update = UpdateConfig(strategy=name, replay_size=args.replay_size, replay_share=args.replay_share, general_replay_size=args.general_replay_size,
                          general_mix=args.general_mix, compact_every=args.compact_every if name == "continue" else 0)
    gates = Gates(**OPEN_GATES, sample_size=4, general_size=args.general_size)
    seconds, per_version, card = 0.0, [], None
    for k, step in enumerate(plan, start=1):
        version = f"v{k:06d}"
        land(ws, version, step)
        started = time.perf_counter()
        training = train_memory_adapter(ws, version, base_id, args.train_config, update, lambda figures: None, lambda text: None,
                                        None, "benchmarks/incremental_update.py")
        merge_memory_model(ws, version, args.merge_config)
        seconds += time.perf_counter() - started
        card, results, candidate = evaluate_memory_model(ws, version, base_id, gates, ProtocolEvalConfig(executive_backend="none"))
        try:
            ws.registry.promote_version(version)
        except RuntimeError:  # a gate that measured nothing; the benchmark promotes by the registry's own compare-and-set
            ws.registry.promote(candidate["model_id"], "benchmark: open gates", expected_current=candidate["parent"])
        per_version.append({"version": version, "acc": card.acc, "steps": training["total_steps"], "adapters_trained": training["adapters_trained"],
                            "compaction": training["update"]["compaction"], "examples": training["examples"],
                            "cumulative_seconds": round(seconds, 1)})
        print(f"  {name} {version}: ACC {fmt(card.acc)} BWT {fmt(card.bwt)}; {training['adapters_trained']} adapters, {training['total_steps']} steps"
              f"{', compaction' if training['update']['compaction'] else ''}; cumulative {seconds:.0f}s", flush=True)
    memory = LocalChatModel(ws.registry.fetch(ws.registry.promoted_id()))
    rewrites = [f for step in plan for f in step["rewritten"].values()]
    deleted = [step_fact for k, step in enumerate(plan) for d in step["deleted"] for step_fact in [fact_of(plan, d, k)]]
    rewrite_answers = ask_memory(memory, [f["question"] for f in rewrites], max_new_tokens=24)
    deleted_answers = ask_memory(memory, [f["question"] for f in deleted], max_new_tokens=24)
    general = card.general
    return {
        "acc": card.acc, "bwt": card.bwt, "forgetting": card.forgetting, "matrix": card.matrix, "cumulative_seconds": round(seconds, 1),
        "rewrite_accuracy": mean(recalled(a, f["answer"]) for a, f in zip(rewrite_answers, rewrites)),
        "rewrite_old_value_rate": mean(recalled(a, f["old_answer"]) for a, f in zip(rewrite_answers, rewrites)),
        "deleted_fact_rate": mean(recalled(a, f["answer"]) for a, f in zip(deleted_answers, deleted)),
        "general_loglik_delta": general.get("loglik_delta"), "general_accuracy": general.get("accuracy"),
        "per_version": per_version, "update": asdict(update),
    }


def fact_of(plan: list[dict], doc_id: str, before: int) -> dict:
    """The fact a document held just before version `before` deleted it (its last landing or rewrite)."""
    fact = None
    for step in plan[:before]:
        fact = step["rewritten"].get(doc_id) or step["landed"].get(doc_id) or fact
    return fact


def mean(values) -> float | None:
    values = list(values)
    return round(sum(values) / len(values), 4) if values else None


def fmt(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def print_report(results: dict) -> None:
    for name, r in results.items():
        columns = sorted({c for row in r["matrix"].values() for c in row})
        print(f"\n{name}: R[after update][of version]")
        print("| after | " + " | ".join(columns) + " |")
        print("|---" * (len(columns) + 1) + "|")
        for update, row in sorted(r["matrix"].items()):
            print(f"| {update} | " + " | ".join(fmt(row.get(c), 2) if row.get(c) is not None else "" for c in columns) + " |")
    print("\n| strategy | ACC | BWT | cumulative s | cost / retrain | rewrite accuracy | old value given | deleted facts given | general Δ nats |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {fmt(r['acc'])} | {fmt(r['bwt'])} | {r['cumulative_seconds']} | {fmt(r['cost_ratio'])} | {fmt(r['rewrite_accuracy'])} | "
              f"{fmt(r['rewrite_old_value_rate'])} | {fmt(r['deleted_fact_rate'])} | {fmt(r['general_loglik_delta'])} |")


def memory_base(kind: str, facts: list[dict], work: Path, seed: int) -> tuple[str, Path, str]:
    """(base id, model directory, description): a tiny random Llama whose tokenizer is trained on the facts, or the
    embedded SmolLM2-135M."""
    if kind == "tiny":
        from tests.tiny_models import build_tiny_llama

        texts = [f"{f['question']} {f['answer']}." for f in facts]
        return "base-tiny-llama", build_tiny_llama(work / "tiny-llama", texts, seed=seed), "tiny random 2-layer Llama"
    from memo_pipelines.llm.embedded import EMBEDDED_NAME, embedded_model_dir

    return EMBEDDED_NAME, embedded_model_dir(ROOT / ".memo" / "work" / "embedded"), "SmolLM2-135M-Instruct (embedded)"


def add_training_arguments(parser: argparse.ArgumentParser) -> None:
    """The base model, training and replay options the update benchmarks share."""
    parser.add_argument("--base-model", default="embedded", help="'embedded' (SmolLM2-135M) or 'tiny' (a random 2-layer Llama)")
    parser.add_argument("--epochs", type=int, default=12, help="the most passes; early stopping ends sooner")
    parser.add_argument("--learning-rate", type=float, default=3e-4)
    parser.add_argument("--stop-every", type=int, default=TrainConfig.stop_every)
    parser.add_argument("--replay-size", type=int, default=UpdateConfig.replay_size)
    parser.add_argument("--replay-share", type=float, default=UpdateConfig.replay_share)
    parser.add_argument("--general-replay-size", type=int, default=UpdateConfig.general_replay_size)
    parser.add_argument("--general-mix", type=float, default=UpdateConfig.general_mix)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--versions", type=int, default=8)
    parser.add_argument("--facts-per-version", type=int, default=6)
    parser.add_argument("--strategies", default=",".join(STRATEGY_NAMES))
    add_training_arguments(parser)
    parser.add_argument("--compact-every", type=int, default=0)
    parser.add_argument("--merge-method", default="ties")
    parser.add_argument("--merge-density", type=float, default=0.5)
    parser.add_argument("--general-size", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="tiny random Llama, 4 versions of 2 facts (one delete and rewrite): a smoke run")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if args.quick:
        args.versions, args.facts_per_version, args.base_model, args.epochs, args.learning_rate, args.general_size = 4, 2, "tiny", 60, 5e-3, 4
        args.general_replay_size, args.stop_every = 3, 4
    signal.signal(signal.SIGTERM, terminated)  # `timeout`: stop the SeaweedFS server (its own session) and remove the scratch folder
    args.train_config = TrainConfig(learning_rate=args.learning_rate, epochs=args.epochs, batch_size=8, seed=args.seed, stop_every=args.stop_every)
    args.merge_config = MergeConfig(method=args.merge_method, density=args.merge_density, seed=args.seed)

    facts = single_hop_facts(DATA)
    plan = plan_versions(facts, args.versions, args.facts_per_version, args.seed)
    work = Path(tempfile.mkdtemp(prefix="memo-incremental-"))
    CLEANUPS.append(lambda: shutil.rmtree(work, ignore_errors=True))
    facts_written = [f for step in plan for f in [*step["landed"].values(), *step["rewritten"].values()]]
    base_id, base_dir, described = memory_base(args.base_model, facts_written, work, args.seed)
    server = SeaweedServer(work / "seaweed", free_s3_port(), env=CREDENTIALS)
    server.start()
    CLEANUPS.append(server.stop)
    results = {}

    def write(complete: bool) -> None:
        reference = results.get("retrain", {}).get("cumulative_seconds")
        for r in results.values():
            r["cost_ratio"] = round(r["cumulative_seconds"] / reference, 3) if reference else None
            r["acc_ratio"] = round(r["acc"] / results["retrain"]["acc"], 3) if reference and r["acc"] is not None and results["retrain"]["acc"] else None
        if not args.json:
            return
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "complete": complete, "strategies": results,
            "configuration": {**{k: str(v) for k, v in vars(args).items() if k not in ("train_config", "merge_config")},
                              "train": asdict(args.train_config), "merge": asdict(args.merge_config)},
            "plan": [{"landed": len(s["landed"]), "deleted": s["deleted"], "rewritten": sorted(s["rewritten"])} for s in plan],
            "models": {"memory": described}, "versions": library_versions(),
            "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "load_average": list(os.getloadavg())},
        }, indent=1, default=str))

    try:
        for name in args.strategies.split(","):
            print(f"{name}:", flush=True)
            results[name] = run_strategy(name, args, plan, base_id, base_dir, server.endpoint_url, work)
            write(complete=False)  # a run stopped by a time limit keeps the strategies it finished
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    write(complete=True)
    print_report(results)


if __name__ == "__main__":
    main()
