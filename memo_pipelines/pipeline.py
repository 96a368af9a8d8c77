"""One library call per pipeline stage, Dagster-free: each reads its inputs from the object store and writes its
outputs under `versions/{version}/`, so a stage can be re-run, backfilled or resumed on its own."""

import hashlib
import json
import random
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from .corpus import Snapshot, build_snapshot
from .evaluation import GENERAL_GUARD, GENERAL_REPLAY, EvalReport, Gates, base_answers, evaluate_candidate
from .llm import ChatModel, LocalChatModel
from .merging import MergeConfig, merge_into_promoted
from .objectstore import ObjectStore
from .reflections import SynthesisConfig, synthesise_reflections
from .registry import ModelRegistry, dir_sha256
from .training import TrainConfig, run_training_subprocess

Log = Callable[[str], None]


def version_key(version: str, name: str) -> str:
    return f"versions/{version}/{name}"


@dataclass
class Workspace:
    """Where a run keeps its state: the bucket, the registry over it, and a local scratch folder."""

    store: ObjectStore
    registry: ModelRegistry
    work_dir: Path
    landing_prefix: str = "landing/"

    def scratch(self, version: str, stage: str) -> Path:
        path = self.work_dir / "runs" / version / stage
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        return path


# -- 1. corpus snapshot -------------------------------------------------------------------------------------------


def snapshot_corpus(ws: Workspace, version: str, max_bytes: int) -> Snapshot:
    manifest = ws.store.get_json(version_key(version, "manifest.json"))
    if manifest is None:
        raise FileNotFoundError(f"version {version} has no manifest at {version_key(version, 'manifest.json')}")
    snapshot = build_snapshot(version, manifest["objects"], ws.store.get_object, ws.landing_prefix, max_bytes)
    ws.store.put_json(version_key(version, "snapshot.json"), snapshot.to_json())
    return snapshot


def load_snapshot(ws: Workspace, version: str) -> Snapshot:
    return Snapshot.from_json(ws.store.get_json(version_key(version, "snapshot.json")))


# -- 2. reflections -----------------------------------------------------------------------------------------------


class PrefixedCache:
    def __init__(self, store: ObjectStore, prefix: str):
        self.store, self.prefix = store, prefix

    def get_json(self, key: str, default=None):
        return self.store.get_json(self.prefix + key, default)

    def put_json(self, key: str, value) -> str:
        return self.store.put_json(self.prefix + key, value)


def generate_reflections(
    ws: Workspace, version: str, generator: ChatModel, strategy: str, progress=None, config: SynthesisConfig | None = None
) -> tuple[list[dict], dict]:
    """The version's reflections as JSONL (loadable with `datasets`), with their statistics and config beside them."""
    snapshot = load_snapshot(ws, version)
    config = config or SynthesisConfig()
    rows, stats = synthesise_reflections(
        snapshot.documents, version, generator, strategy, PrefixedCache(ws.store, "cache/reflections/"), progress, config
    )
    ws.store.put_jsonl(version_key(version, "reflections.jsonl"), rows)
    figures = {**stats.to_json(), "strategy": strategy, "generator": generator.name, "config": asdict(config)}
    ws.store.put_json(version_key(version, "reflections_stats.json"), figures)
    return rows, figures


def load_reflections(ws: Workspace, version: str) -> list[dict]:
    return ws.store.get_jsonl(version_key(version, "reflections.jsonl"))


def earlier_versions(ws: Workspace, version: str) -> list[str]:
    found = {o.key.split("/")[1] for o in ws.store.list_objects("versions/") if o.key.endswith("/reflections.jsonl")}
    return sorted(v for v in found if v < version)


# -- 3. memory adapter --------------------------------------------------------------------------------------------


def general_reference(ws: Workspace, base_id: str) -> dict[str, list[dict]]:
    """The base model's own answers to generic questions: {"replay": trained on, "guard": held out for the gate}."""
    key = f"registry/general/{base_id}.json"
    reference = ws.store.get_json(key)
    if reference is None:
        base = LocalChatModel(ws.registry.fetch(base_id))
        reference = {"replay": base_answers(base, GENERAL_REPLAY), "guard": base_answers(base, GENERAL_GUARD)}
        ws.store.put_json(key, reference)
    return reference


def replay_sample(ws: Workspace, version: str, size: int, seed: int) -> list[dict]:
    pool = [r for v in earlier_versions(ws, version) for r in load_reflections(ws, v)]
    rng = random.Random(f"{seed}-{version}")
    return rng.sample(pool, min(size, len(pool)))


def library_versions() -> dict[str, str]:
    from importlib.metadata import version as installed

    return {name: installed(name) for name in ("torch", "transformers", "peft", "mergekit", "dagster", "memo-pipelines")}


def train_memory_adapter(
    ws: Workspace, version: str, base_id: str, config: TrainConfig, replay_size: int, on_progress: Callable[[dict], None], log: Log,
    launch: dict | None = None,
    general_replay_size: int = 15,
) -> dict:
    """Train this version's adapter on top of the promoted model; upload it with its lineage."""
    parent_id = ws.registry.promoted_id()
    parent_dir = ws.registry.fetch(parent_id)
    rows = load_reflections(ws, version)
    replay = replay_sample(ws, version, replay_size, config.seed)
    general = general_reference(ws, base_id)["replay"][:general_replay_size]
    examples = rows + replay + general
    scratch = ws.scratch(version, "adapter")
    (scratch / "examples.jsonl").write_text("".join(json.dumps({"question": e["question"], "answer": e["answer"]}) + "\n" for e in examples))
    # a checkpoint is only resumed by the identical job: same parent model, examples and config
    job = hashlib.sha256(json.dumps([parent_id, examples, asdict(config)], sort_keys=True).encode()).hexdigest()[:16]
    checkpoint_dir = ws.work_dir / "checkpoints" / version / job
    spec = {"base_dir": str(parent_dir), "out_dir": str(scratch / "adapter"), "examples_path": str(scratch / "examples.jsonl"),
            "config": asdict(config), "checkpoint_dir": str(checkpoint_dir), **(launch or {})}
    figures = run_training_subprocess(spec, scratch, on_progress, log)
    shutil.rmtree(checkpoint_dir.parent, ignore_errors=True)
    ws.store.upload_dir(scratch / "adapter", version_key(version, "adapter"))
    lineage = {"version": version, "parent_model": parent_id, "library_versions": library_versions(), "parent_sha256": ws.registry.get(parent_id)["sha256"],
               "new_reflections": len(rows), "replay_reflections": len(replay), "general_replay": len(general),
               "train_config": asdict(config)}
    ws.store.put_json(version_key(version, "adapter_lineage.json"), lineage)
    return {**figures, **lineage}


# -- 4. merged memory model ---------------------------------------------------------------------------------------


def merge_memory_model(ws: Workspace, version: str, config: MergeConfig) -> dict:
    lineage = ws.store.get_json(version_key(version, "adapter_lineage.json"))
    parent_dir = ws.registry.fetch(lineage["parent_model"])
    scratch = ws.scratch(version, "merge")
    adapter_dir = ws.store.download_dir(version_key(version, "adapter"), scratch / "adapter")
    merged = merge_into_promoted(parent_dir, adapter_dir, scratch / "model", config, scratch)
    model_id = f"{version}-{dir_sha256(scratch / 'model')[:10]}"
    record = ws.registry.register(
        model_id, scratch / "model",
        {"kind": "candidate", "version": version, "parent": lineage["parent_model"], "merge": {"config": asdict(config), "mergekit": merged},
         "training": {"config": lineage["train_config"], "library_versions": lineage["library_versions"]},
         "reflections_etag": ws.store.etag(version_key(version, "reflections.jsonl"))},
    )
    ws.store.put_json(version_key(version, "candidate.json"), {"model_id": model_id, "parent": lineage["parent_model"]})
    return record


# -- 5. evaluation ------------------------------------------------------------------------------------------------


def evaluate_memory_model(ws: Workspace, version: str, base_id: str, gates: Gates, sample_size: int) -> tuple[EvalReport, list[dict], dict]:
    candidate_info = ws.store.get_json(version_key(version, "candidate.json"))
    candidate = LocalChatModel(ws.registry.fetch(candidate_info["model_id"]))
    promoted = LocalChatModel(ws.registry.fetch(candidate_info["parent"]))
    earlier = {v: load_reflections(ws, v) for v in earlier_versions(ws, version)}
    report = evaluate_candidate(candidate, promoted, load_reflections(ws, version), earlier, general_reference(ws, base_id)["guard"], sample_size)
    results = report.gate_results(gates)
    ws.store.put_json(version_key(version, "evaluation.json"), {"candidate": candidate_info, "report": report.to_json(), "gates": results})
    return report, results, candidate_info


# -- 6. promotion -------------------------------------------------------------------------------------------------


def promote_version(ws: Workspace, version: str) -> dict:
    """Promote this version's candidate only if every gate passed and the pointer still holds its parent."""
    evaluation = ws.store.get_json(version_key(version, "evaluation.json"))
    if evaluation is None:
        raise RuntimeError(f"version {version} has no evaluation; refusing to promote")
    failed = [g["name"] for g in evaluation["gates"] if not g["passed"]]
    if failed:
        raise RuntimeError(f"version {version} failed its gates {failed}; refusing to promote")
    candidate = evaluation["candidate"]
    entry = ws.registry.promote(candidate["model_id"], f"version {version} passed its gates", expected_current=candidate["parent"])
    return {**entry, "parent": candidate["parent"]}
