"""Stages 3 and 4: the version's LoRA adapter, trained on top of the model promoted before it with replay, and the
candidate model merged with mergekit and registered with its lineage."""

import hashlib
import json
import random
import shutil
from dataclasses import asdict, dataclass
from typing import Callable

from memo_pipelines.evaluation.metrics import GENERAL_REPLAY, base_answers
from memo_pipelines.llm.backends import LocalChatModel
from memo_pipelines.memory.merging import MergeConfig, merge_into_promoted
from memo_pipelines.memory.training import TrainConfig, run_training_subprocess
from memo_pipelines.pipeline.workspace import Workspace, live_earlier_reflections, load_reflections
from memo_pipelines.storage import layout
from memo_pipelines.storage.layout import version_key
from memo_pipelines.storage.lease import Lease
from memo_pipelines.storage.registry import dir_sha256

Log = Callable[[str], None]


def general_reference(ws: Workspace, base_id: str) -> dict[str, list[dict]]:
    """The base model's own answers to generic questions, replayed in every update: {"replay": [{question, answer}]}."""
    key = layout.general_reference_key(base_id)
    reference = ws.store.get_json(key)
    if reference is None:
        base = LocalChatModel(ws.registry.fetch(base_id))
        reference = {"replay": base_answers(base, GENERAL_REPLAY)}
        ws.store.put_json(key, reference)
    return reference


def replay_sample(ws: Workspace, version: str, size: int, seed: int) -> tuple[list[dict], dict[str, int]]:
    """A seeded sample of earlier versions' live reflections, and the counts of retired ones left out."""
    live, retired = live_earlier_reflections(ws, version)
    pool = [r for v in sorted(live) for r in live[v]]
    rng = random.Random(f"{seed}-{version}")
    return rng.sample(pool, min(size, len(pool))), retired


@dataclass(frozen=True)
class UpdateConfig:
    """What an update trains on besides the version's own reflections, and how long its training lease lasts."""

    replay_size: int = 64  # earlier versions' reflections replayed per update
    general_replay_size: int = 15  # generic questions with the base model's own answers replayed per update
    lease_ttl_s: float = 900.0


def library_versions() -> dict[str, str]:
    from importlib.metadata import version as installed

    return {name: installed(name) for name in ("torch", "transformers", "peft", "mergekit", "dagster", "memo-pipelines")}


def train_memory_adapter(
    ws: Workspace, version: str, base_id: str, config: TrainConfig, replay_size: int, on_progress: Callable[[dict], None], log: Log,
    launch: dict | None = None,
    general_replay_size: int = UpdateConfig.general_replay_size,
    owner: str = "memo",
    lease_ttl_s: float = UpdateConfig.lease_ttl_s,
) -> dict:
    """Train this version's adapter on top of the model promoted after the previous version; upload it with its lineage.

    In a forward run that parent is the promoted model; in a backfill of an old version it is the model the registry
    history says was promoted after the version before it. One run at a time trains a version: the others find its
    lease in the bucket and fail (their re-execution succeeds once the lease is released or expired).
    """
    with Lease(ws.store, layout.training_lock_key(version), owner, lease_ttl_s) as lease:
        def renewing_progress(figures: dict) -> None:
            lease.renew(every_s=lease_ttl_s / 3)
            on_progress(figures)

        return _train_memory_adapter(ws, version, base_id, config, replay_size, renewing_progress, log, launch, general_replay_size)


def _train_memory_adapter(ws, version, base_id, config, replay_size, on_progress, log, launch, general_replay_size) -> dict:
    current_id = ws.registry.promoted_id()
    parent_id = ws.registry.promoted_before(version)
    parent_dir = ws.registry.fetch(parent_id)
    rows = load_reflections(ws, version)
    replay, retired = replay_sample(ws, version, replay_size, config.seed)
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
               "retired_reflections": retired, "backfill": parent_id != current_id, "promoted_at_training": current_id,
               "train_config": asdict(config)}
    ws.store.put_json(version_key(version, "adapter_lineage.json"), lineage)
    return {**figures, **lineage}


def merge_memory_model(ws: Workspace, version: str, config: MergeConfig) -> dict:
    lineage = ws.store.get_json(version_key(version, "adapter_lineage.json"))
    parent_dir = ws.registry.fetch(lineage["parent_model"])
    # keyed by the adapter's ETag: mergekit caches loaded models by path for the life of the process, so a re-merge of
    # this version (a backfill or re-execution in the same process) must not read its new adapter from an old path
    adapter_etag = ws.store.etag(version_key(version, "adapter/training.json"))
    scratch = ws.scratch(version, f"merge-{adapter_etag[:12]}")
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
    shutil.rmtree(scratch, ignore_errors=True)  # the model is in the bucket now; each merge has its own folder
    return record
