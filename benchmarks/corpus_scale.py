"""Reflections at corpus scale: a deterministic synthetic corpus of 1,000 documents (benchmarks/synthetic_corpus.py)
through the library's real first stages on a local SeaweedFS server, documents per second and the share of time per
step, with the snapshot's parallel reads beside one reader in the same run.

Steps, in the order the asset graph runs them: upload (landing/, 8 threads, as `memo upload` would), manifest (the
landing sensor's diff), snapshot with one reader (the baseline) and with parallel reads (the default), parse (spaCy
`nlp.pipe` over every document, the grounded generator's one pass), reflections (the grounded form's steps on the
parses), probes (the held-out probe pass: its rule forms; `--probe-generator` adds the generator's phrasing of probes,
the one place the grounded path calls the 135M model, measured on 60 documents at more than 8 minutes on 2 busy cores,
so a GPU or an endpoint's job at scale).

    .venv/bin/python benchmarks/corpus_scale.py --quick --json benchmarks/results/corpus_scale_quick.json   # 60 documents
    .venv/bin/python benchmarks/corpus_scale.py --json benchmarks/results/corpus_scale.json                 # 1,000 documents
"""

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("TQDM_DISABLE", "1")

from synthetic_corpus import synthetic_corpus  # noqa: E402

from memo_pipelines.corpus.landing import Cursor, diff_landing, manifest  # noqa: E402
from memo_pipelines.reflections.probes import ProbeConfig, write_heldout_probes  # noqa: E402
from memo_pipelines.llm.backends import LLMSpec, load_chat_model  # noqa: E402
from memo_pipelines.llm.embedded import embedded_model_dir  # noqa: E402
from memo_pipelines.storage.workspace import Workspace  # noqa: E402
from memo_pipelines.reflections.dataset import generate_reflections  # noqa: E402
from memo_pipelines.corpus.reading import load_snapshot, snapshot_corpus  # noqa: E402
from memo_pipelines.memory.update import library_versions  # noqa: E402
from memo_pipelines.reflections.nlp import parse_many, pipeline_name  # noqa: E402
from memo_pipelines.storage.layout import LANDING_PREFIX, version_key  # noqa: E402
from memo_pipelines.storage.objectstore import ObjectStore, make_s3_client  # noqa: E402
from memo_pipelines.storage.registry import ModelRegistry  # noqa: E402
from memo_pipelines.storage.seaweed import SeaweedServer, free_s3_port  # noqa: E402

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "memo-bench", "AWS_SECRET_ACCESS_KEY": "memo-bench-secret"}
VERSION = "v000001"


def timed(seconds: dict, step: str, work):
    started = time.perf_counter()
    result = work()
    seconds[step] = round(time.perf_counter() - started, 2)
    print(f"  {step}: {seconds[step]} s", file=sys.stderr, flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=1000)
    parser.add_argument("--read-workers", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--probe-generator", action="store_true", help="the generator also phrases probes (slow on a CPU)")
    parser.add_argument("--quick", action="store_true", help="60 documents")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.quick:
        args.documents = 60
    corpus = synthetic_corpus(args.documents, args.seed)
    started = time.perf_counter()
    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="memo-scale-") as scratch:
        work = Path(scratch)
        server = SeaweedServer(work / "seaweed", free_s3_port(), env=CREDENTIALS)
        server.start()
        try:
            client = make_s3_client(server.endpoint_url, CREDENTIALS["AWS_ACCESS_KEY_ID"], CREDENTIALS["AWS_SECRET_ACCESS_KEY"])
            store = ObjectStore(client, f"scale-{uuid.uuid4().hex[:8]}")
            store.ensure_bucket()
            ws = Workspace(store, ModelRegistry(store, work / "models"), work / "work", LANDING_PREFIX)

            def upload():
                with ThreadPoolExecutor(8) as pool:
                    list(pool.map(lambda item: store.put_bytes(LANDING_PREFIX + item[0], item[1].encode()), corpus.items()))

            timed(seconds, "upload", upload)
            diff = timed(seconds, "manifest", lambda: diff_landing(list(store.list_objects(LANDING_PREFIX)), Cursor()))
            store.put_json(version_key(VERSION, "manifest.json"), manifest(VERSION, diff))
            snapshot_corpus(ws, VERSION, 1_000_000)  # warm-up, untimed: imports, the language check's first use
            one = timed(seconds, "snapshot_one_reader", lambda: snapshot_corpus(ws, VERSION, 1_000_000, read_workers=1))
            snapshot = timed(seconds, "snapshot", lambda: snapshot_corpus(ws, VERSION, 1_000_000, read_workers=args.read_workers))
            if len(snapshot.documents) != len(one.documents):
                raise SystemExit(f"parallel reads kept {len(snapshot.documents)} documents, one reader {len(one.documents)}")
            documents = load_snapshot(ws.store, VERSION).documents
            timed(seconds, "parse", lambda: parse_many([d.text for d in documents]))
            # the grounded form calls no model; the pipeline's generator is passed as the asset passes it
            probe_config = ProbeConfig(phrase_with_generator=args.probe_generator)
            generator = load_chat_model(LLMSpec("local"), embedded_model_dir(ROOT / ".memo" / "work" / "embedded"))
            rows, figures = timed(seconds, "reflections", lambda: generate_reflections(ws, VERSION, generator, "grounded"))
            probes, report = timed(seconds, "probes", lambda: write_heldout_probes(ws, VERSION, generator, "grounded", probe_config))
        finally:
            server.stop()
    pipeline_steps = ["snapshot", "parse", "reflections", "probes"]
    pipeline_seconds = sum(seconds[s] for s in pipeline_steps)
    result = {
        "documents": args.documents,
        "documents_kept": len(documents),
        "documents_per_s": round(args.documents / pipeline_seconds, 2),
        "seconds_by_step": seconds,
        "share_by_step": {s: round(seconds[s] / pipeline_seconds, 3) for s in pipeline_steps},
        "snapshot_documents_per_s": {"one_reader": round(args.documents / seconds["snapshot_one_reader"], 1),
                                     f"{args.read_workers}_readers": round(args.documents / seconds["snapshot"], 1),
                                     "ratio": round(seconds["snapshot_one_reader"] / seconds["snapshot"], 2)},
        "reflections": len(rows), "reflections_by_step": figures["kept_by_step"], "dropped_by_reason": figures["dropped_by_reason"],
        "probes": len(probes), "generator_calls": figures["generator_calls"],
        "pipeline": pipeline_name(), "wall_seconds": round(time.perf_counter() - started, 1),
        "configuration": {k: str(v) for k, v in vars(args).items()}, "library_versions": library_versions(),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "load_average": os.getloadavg()},
    }
    print(f"{args.documents} synthetic documents ({len(documents)} kept), {len(rows)} reflections, {len(probes)} probes, "
          f"{result['pipeline']}, {os.cpu_count()} CPUs (load {os.getloadavg()[0]:.1f})")
    print("| step | seconds | share of snapshot..probes |")
    print("|---|---|---|")
    for step, value in seconds.items():
        share = result["share_by_step"].get(step)
        print(f"| {step} | {value} | {'' if share is None else f'{share:.1%}'} |")
    print(f"documents per second, snapshot to probes: {result['documents_per_s']}")
    reads = result["snapshot_documents_per_s"]
    print(f"snapshot reads: one reader {reads['one_reader']} docs/s, {args.read_workers} readers "
          f"{reads[f'{args.read_workers}_readers']} docs/s ({reads['ratio']}x)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
