"""What a deletion costs: continue's forget update against a full retrain on the same history.

Version 1 lands N MuSiQue single-hop facts, one document each (as benchmarks/incremental_update.py lands them: the
fact is its document, its reflection and its probe), and is learned and promoted. Version 2 records the deletion of
D of those documents and nothing else, the way the landing sensor now makes a version of a deletion alone. Two
candidates for version 2 are made from the same promoted model with the library's own stages (train_memory_adapter,
merge_memory_model, on a local SeaweedFS bucket):

  retrain  UpdateConfig(strategy="retrain"): from the base on every live reflection (what a compaction costs)
  forget   UpdateConfig(strategy="continue"): the forget update on top of the promoted model ("I don't know" to the
           deleted documents' questions, replay, the check, and a compaction if the check fails)

Printed and written (--json): deleted_probe_answer_rate (the forget candidate's share of deleted documents' probes
still answered with their deleted answer; goal 0), forget_seconds, forget_cost_vs_retrain (forget time / retrain
time, training and merge, same run; goal <= 0.3), live_probe_ratio_vs_retrain (live probes' recall after the forget
/ after the retrain; goal >= 0.95), with the promoted model's figures before the deletion for scale.

The probes are the facts' own questions (MuSiQue gives one phrasing a fact), so the deleted probes are among the
questions the forget update trains to decline: the rate says what the served memory answers to them, not whether a
decline carries over to a new wording.

    .venv/bin/python benchmarks/forget.py --quick --json benchmarks/results/forget_quick.json
        # tiny random Llama, 24 facts, 3 deleted: a smoke run of both paths
    .venv/bin/python benchmarks/forget.py --json benchmarks/results/forget.json
        # SmolLM2-135M (embedded)
"""

import argparse
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

from benchmarks.continual_eval import CLEANUPS, CREDENTIALS, terminated  # noqa: E402
from benchmarks.incremental_update import DATA, add_training_arguments, land, memory_base, single_hop_facts  # noqa: E402
from memo_pipelines.llm.backends import LocalChatModel  # noqa: E402
from memo_pipelines.memory.merging import MergeConfig  # noqa: E402
from memo_pipelines.memory.strategies import UpdateConfig  # noqa: E402
from memo_pipelines.memory.training import TrainConfig  # noqa: E402
from memo_pipelines.memory.update import library_versions, merge_memory_model, train_memory_adapter  # noqa: E402
from memo_pipelines.qa import ask_memory, is_idk, recalled  # noqa: E402
from memo_pipelines.storage.layout import LANDING_PREFIX  # noqa: E402
from memo_pipelines.storage.objectstore import ObjectStore, make_s3_client  # noqa: E402
from memo_pipelines.storage.registry import ModelRegistry  # noqa: E402
from memo_pipelines.storage.seaweed import SeaweedServer, free_s3_port  # noqa: E402
from memo_pipelines.storage.workspace import Workspace  # noqa: E402

GOALS = {"deleted_probe_answer_rate": 0.0, "forget_cost_vs_retrain": 0.3, "live_probe_ratio_vs_retrain": 0.95}


def scores(model_dir: Path, facts: list[dict]) -> dict:
    """Recall (the fact's answer given) and declines of a model over facts asked by their own question."""
    answers = ask_memory(LocalChatModel(model_dir), [f["question"] for f in facts], max_new_tokens=24)
    return {"recall": round(sum(recalled(a, f["answer"]) for a, f in zip(answers, facts)) / len(facts), 4),
            "declined": round(sum(map(is_idk, answers)) / len(facts), 4), "n": len(facts)}


def update(ws: Workspace, args, version: str, strategy: str, base_id: str) -> tuple[dict, dict, float]:
    """The version's candidate by `strategy`, from the promoted model: (training figures, candidate record, seconds)."""
    config = UpdateConfig(strategy=strategy, replay_size=args.replay_size, replay_share=args.replay_share,
                          general_replay_size=args.general_replay_size, general_mix=args.general_mix, forget_epochs=args.forget_epochs)
    started = time.perf_counter()
    training = train_memory_adapter(ws, version, base_id, args.train_config, config, lambda figures: None, lambda text: None,
                                    None, f"benchmarks/forget.py {strategy}")
    record = merge_memory_model(ws, version, args.merge_config)
    return training, record, round(time.perf_counter() - started, 2)


def run(args, facts: list[dict], base_id: str, base_dir: Path, endpoint: str, work: Path) -> dict:
    client = make_s3_client(endpoint, CREDENTIALS["AWS_ACCESS_KEY_ID"], CREDENTIALS["AWS_SECRET_ACCESS_KEY"])
    store = ObjectStore(client, f"bench-forget-{uuid.uuid4().hex[:6]}")
    store.ensure_bucket()
    ws = Workspace(store, ModelRegistry(store, work / "models"), work, LANDING_PREFIX)
    ws.registry.ensure_base(base_id, base_dir)
    documents = {f"fact-{i:04d}.md": fact for i, fact in enumerate(facts)}
    deleted = sorted(documents)[:: max(1, len(documents) // args.deleted)][: args.deleted]
    live = [documents[d] for d in sorted(documents) if d not in deleted]
    gone = [documents[d] for d in deleted]

    land(ws, "v000001", {"landed": documents, "deleted": [], "rewritten": {}})
    started = time.perf_counter()
    first, _, _ = update(ws, args, "v000001", "retrain", base_id)
    v1_seconds = round(time.perf_counter() - started, 2)
    candidate = store.get_json("versions/v000001/candidate.json")
    ws.registry.promote(candidate["model_id"], "benchmark: version 1 learned", expected_current=candidate["parent"])
    promoted_dir = ws.registry.fetch(candidate["model_id"])
    before = {"live": scores(promoted_dir, live), "deleted": scores(promoted_dir, gone), "seconds": v1_seconds, "steps": first["total_steps"]}
    print(f"version 1 ({len(facts)} facts): live recall {before['live']['recall']}, to-be-deleted recall {before['deleted']['recall']}, "
          f"{before['steps']} steps, {v1_seconds}s", flush=True)

    land(ws, "v000002", {"landed": {}, "deleted": deleted, "rewritten": {}})
    arms = {}
    for name, strategy in (("retrain", "retrain"), ("forget", "continue")):  # neither is promoted: both start from version 1's model
        training, record, seconds = update(ws, args, "v000002", strategy, base_id)
        model_dir = ws.registry.fetch(record["model_id"])
        arms[name] = {"seconds": seconds, "steps": training["total_steps"], "examples": training["examples"],
                      "compaction": training["update"]["compaction"], "forget_check": training.get("forget_check"),
                      "live": scores(model_dir, live), "deleted": scores(model_dir, gone)}
        print(f"{name}: {seconds}s, {training['total_steps']} steps on {training['examples']} examples"
              f"{', compaction: ' + training['update']['compaction'] if training['update']['compaction'] else ''}; "
              f"live recall {arms[name]['live']['recall']}, deleted recall {arms[name]['deleted']['recall']} "
              f"(declined {arms[name]['deleted']['declined']})", flush=True)
    retrain, forget = arms["retrain"], arms["forget"]
    return {
        "deleted_probe_answer_rate": forget["deleted"]["recall"],
        "forget_seconds": forget["seconds"],
        "forget_cost_vs_retrain": round(forget["seconds"] / retrain["seconds"], 3),
        "live_probe_ratio_vs_retrain": round(forget["live"]["recall"] / retrain["live"]["recall"], 3) if retrain["live"]["recall"] else None,
        "deleted_probe_decline_rate": forget["deleted"]["declined"],
        "retrain_seconds": retrain["seconds"],
        "facts": len(facts), "deleted_documents": len(deleted), "before": before, "arms": arms,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--facts", type=int, default=120)
    parser.add_argument("--deleted", type=int, default=8)
    add_training_arguments(parser)
    parser.add_argument("--forget-epochs", type=int, default=UpdateConfig.forget_epochs)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="tiny random Llama, 24 facts, 3 deleted: a smoke run")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if args.quick:
        # no generic pairs: a random base's own answers to them are long random strings, taking a 2-layer model's capacity
        args.facts, args.deleted, args.base_model, args.epochs, args.learning_rate, args.general_replay_size, args.stop_every = 24, 3, "tiny", 60, 5e-3, 0, 8
        args.forget_epochs = 8  # the random tiny model learns its first "I don't know" slower than the 135M one
    signal.signal(signal.SIGTERM, terminated)  # `timeout`: stop the SeaweedFS server (its own session) and remove the scratch folder
    args.train_config = TrainConfig(learning_rate=args.learning_rate, epochs=args.epochs, batch_size=8, seed=args.seed, stop_every=args.stop_every)
    args.merge_config = MergeConfig(seed=args.seed)

    facts = random.Random(args.seed).sample(single_hop_facts(DATA), args.facts)
    work = Path(tempfile.mkdtemp(prefix="memo-forget-"))
    CLEANUPS.append(lambda: shutil.rmtree(work, ignore_errors=True))
    base_id, base_dir, described = memory_base(args.base_model, facts, work, args.seed)
    server = SeaweedServer(work / "seaweed", free_s3_port(), env=CREDENTIALS)
    server.start()
    CLEANUPS.append(server.stop)
    try:
        result = run(args, facts, base_id, base_dir, server.endpoint_url, work)
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    print("\n| figure | value | goal |\n|---|---|---|")
    for name in ("deleted_probe_answer_rate", "forget_seconds", "forget_cost_vs_retrain", "live_probe_ratio_vs_retrain",
                 "deleted_probe_decline_rate", "retrain_seconds"):
        goal = GOALS.get(name)
        print(f"| {name} | {result[name]} | {'' if goal is None else ('<= ' if name != 'live_probe_ratio_vs_retrain' else '>= ') + str(goal)} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            **result, "goals": GOALS,
            "configuration": {**{k: str(v) for k, v in vars(args).items() if k not in ("train_config", "merge_config")},
                              "train": asdict(args.train_config), "merge": asdict(args.merge_config)},
            "models": {"memory": described}, "versions": library_versions(),
            "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "load_average": list(os.getloadavg())},
        }, indent=1, default=str))


if __name__ == "__main__":
    main()
