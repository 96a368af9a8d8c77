"""Does a version's cost follow its new data, or the history before it? A synthetic history of N versions, each
landing the same number of new MuSiQue single-hop facts (one document each), goes through the library's own stages on
a local SeaweedFS bucket, version after version: the snapshot (with duplicate detection against every earlier
version), the update (`continue`, the default: new rows, replay, on top of the promoted model), the candidate, the
evaluation (every live version's probes, earlier ones sampled) and the promotion. The reflections and probes of a fact
are written as the stages write them (benchmarks/incremental_update.py `land`): the generator's cost is per new
document, the same at every version, and is left out.

Per version: seconds by stage, examples trained (new rows and replay), probes scored, objects in the bucket. The
figures at versions 1, 10 and N, and the ratios of version N to version 1 (the issue's goal: at most 1.3) and to
version 2 (the first with a history to replay). A tiny random Llama trains and answers: its step costs milliseconds,
so what grows with the history shows at once; with the 135M model training dominates more.

    .venv/bin/python benchmarks/history_cost.py --quick                       # 10 versions
    .venv/bin/python benchmarks/history_cost.py --versions 50 --json benchmarks/results/history_cost.json
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
from benchmarks.incremental_update import DATA, land, memory_base, single_hop_facts  # noqa: E402

from memo_pipelines.corpus.reading import snapshot_corpus  # noqa: E402
from memo_pipelines.evaluation.candidate import ProtocolEvalConfig, evaluate_memory_model  # noqa: E402
from memo_pipelines.evaluation.card import Gates  # noqa: E402
from memo_pipelines.memory.merging import MergeConfig  # noqa: E402
from memo_pipelines.memory.strategies import UpdateConfig  # noqa: E402
from memo_pipelines.memory.training import TrainConfig  # noqa: E402
from memo_pipelines.memory.update import library_versions, merge_memory_model, train_memory_adapter  # noqa: E402
from memo_pipelines.qa import IDK  # noqa: E402
from memo_pipelines.reflections.probe_rules import probe_row  # noqa: E402
from memo_pipelines.storage.layout import LANDING_PREFIX, version_key  # noqa: E402
from memo_pipelines.storage.objectstore import ObjectStore, make_s3_client  # noqa: E402
from memo_pipelines.storage.registry import ModelRegistry  # noqa: E402
from memo_pipelines.storage.seaweed import SeaweedServer, free_s3_port  # noqa: E402
from memo_pipelines.storage.workspace import Workspace  # noqa: E402

STAGES = ["snapshot", "train", "merge", "evaluate", "promote"]
# a random tiny model cannot answer reworded probes, decline or know general facts: the gates are open, so every version
# is promoted and the history grows as it would in a deployment whose gates pass
OPEN_GATES = dict(min_new_version_probes=1, min_heldout_recall=0.0, max_forgetting=1.0, min_abstention=0.0, max_general_drop=100.0,
                  general_size=20)


def run_version(ws: Workspace, version: str, facts: dict, base_id: str, args) -> dict:
    seconds = {}

    def timed(stage, work):
        started = time.perf_counter()
        result = work()
        seconds[stage] = round(time.perf_counter() - started, 3)
        return result

    land(ws, version, {"landed": facts, "deleted": [], "rewritten": {}})
    # and one unanswerable probe, as the probe stage writes about a name no document has (the abstention gate needs one)
    probes = ws.store.get_jsonl(version_key(version, "probes.jsonl"))
    ws.store.put_jsonl(version_key(version, "probes.jsonl"), probes + [
        probe_row(f"Who manages the Dorrow plant number {version[1:]}?", IDK, "unanswerable", "rule", sorted(facts)[:1], version)])
    timed("snapshot", lambda: snapshot_corpus(ws, version, 1_000_000))
    training = timed("train", lambda: train_memory_adapter(ws, version, base_id, args.train_config, args.update_config,
                                                           lambda figures: None, lambda message: None))
    timed("merge", lambda: merge_memory_model(ws, version, MergeConfig(seed=args.seed)))
    card, gates, _ = timed("evaluate", lambda: evaluate_memory_model(ws, version, base_id, args.gates, ProtocolEvalConfig(executive_backend="none")))
    outcome = timed("promote", lambda: ws.registry.promote_version(version))
    if not outcome["promoted"]:
        raise SystemExit(f"{version} was not promoted: {outcome['reason']}")
    return {"version": version, "seconds": seconds, "total_seconds": round(sum(seconds.values()), 3),
            "examples": training["examples"], "new_reflections": training["new_reflections"], "replay_reflections": training["replay_reflections"],
            "steps": training["total_steps"], "probes_scored": sum(card.probes_measured.values()),
            "objects": sum(1 for _ in ws.store.list_objects("versions/"))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--versions", type=int, default=50)
    parser.add_argument("--facts-per-version", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=4, help="passes over each update's examples")
    parser.add_argument("--replay-limit", type=int, default=UpdateConfig.replay_limit)
    parser.add_argument("--earlier-probes", type=int, default=Gates.earlier_probes)
    parser.add_argument("--earlier-probes-total", type=int, default=Gates.earlier_probes_total)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="10 versions")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.quick:
        args.versions = 10
    signal.signal(signal.SIGTERM, terminated)
    args.train_config = TrainConfig(learning_rate=5e-3, epochs=args.epochs, batch_size=8, seed=args.seed, stop_every=0, checkpoint_every=10_000)
    args.update_config = UpdateConfig(general_replay_size=0, replay_limit=args.replay_limit)
    args.gates = Gates(**OPEN_GATES, earlier_probes=args.earlier_probes, earlier_probes_total=args.earlier_probes_total)
    facts = random.Random(args.seed).sample(single_hop_facts(DATA), args.versions * args.facts_per_version)

    work = Path(tempfile.mkdtemp(prefix="memo-history-"))
    CLEANUPS.append(lambda: shutil.rmtree(work, ignore_errors=True))
    base_id, base_dir, described = memory_base("tiny", facts, work, args.seed)
    server = SeaweedServer(work / "seaweed", free_s3_port(), env=CREDENTIALS)
    server.start()
    CLEANUPS.append(server.stop)
    rows = []
    try:
        client = make_s3_client(server.endpoint_url, CREDENTIALS["AWS_ACCESS_KEY_ID"], CREDENTIALS["AWS_SECRET_ACCESS_KEY"])
        store = ObjectStore(client, f"bench-history-{uuid.uuid4().hex[:6]}")
        store.ensure_bucket()
        ws = Workspace(store, ModelRegistry(store, work / "models"), work, LANDING_PREFIX)
        ws.registry.ensure_base(base_id, base_dir)
        print(f"{'version':>8} {'total s':>8} " + " ".join(f"{s:>9}" for s in STAGES) + f" {'examples':>9} {'replay':>7} {'probes':>7} {'objects':>8}")
        for n in range(1, args.versions + 1):
            version = f"v{n:06d}"
            landed = {f"fact-{n:03d}-{i}.md": fact for i, fact in enumerate(facts[(n - 1) * args.facts_per_version: n * args.facts_per_version])}
            row = run_version(ws, version, landed, base_id, args)
            rows.append(row)
            print(f"{n:>8} {row['total_seconds']:>8} " + " ".join(f"{row['seconds'][s]:>9}" for s in STAGES)
                  + f" {row['examples']:>9} {row['replay_reflections']:>7} {row['probes_scored']:>7} {row['objects']:>8}", flush=True)
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    last = rows[-1]
    at = {str(n): rows[n - 1] for n in sorted({1, 2, min(10, len(rows)), len(rows)})}
    ratios = {f"v{len(rows)}_over_v1": round(last["total_seconds"] / rows[0]["total_seconds"], 2),
              f"v{len(rows)}_over_v2": round(last["total_seconds"] / rows[1]["total_seconds"], 2) if len(rows) > 1 else None}
    ratios.update({f"{stage}_v{len(rows)}_over_v2": round(last["seconds"][stage] / max(rows[1]["seconds"][stage], 1e-3), 2)
                   for stage in STAGES if len(rows) > 1})
    print("ratios: " + ", ".join(f"{k} {v}" for k, v in ratios.items()))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "at": at, "ratios": ratios, "goal": {"v50_over_v1": 1.3}, "versions": rows,
            "configuration": {"versions": args.versions, "facts_per_version": args.facts_per_version, "epochs": args.epochs,
                              "replay_limit": args.replay_limit, "earlier_probes": args.earlier_probes,
                              "earlier_probes_total": args.earlier_probes_total, "train": asdict(args.train_config),
                              "update": asdict(args.update_config)},
            "models": {"memory": described}, "library_versions": library_versions(),
            "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "load_average": list(os.getloadavg())},
        }, indent=1, default=str))


if __name__ == "__main__":
    main()
