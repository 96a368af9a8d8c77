"""Stages 3 and 4, the memory update of a version: the adapters its update strategy plans (strategies.py), each trained
in a child process (training.py) with its checkpoints mirrored to the bucket (checkpoints.py), and the candidate model
built from them (folded, or merged with mergekit) and registered with its lineage."""

import dataclasses
import hashlib
import json
import shutil
from dataclasses import asdict
from typing import Callable

from memo_pipelines.evaluation.general import general_replay_questions
from memo_pipelines.evaluation.metrics import base_answers
from memo_pipelines.llm.backends import LocalChatModel
from memo_pipelines.memory.merging import MergeConfig, merge_deltas
from memo_pipelines.memory.pending_cost import bounded_config, parent_update_seconds, pending_cost, spent
from memo_pipelines.memory.training import TrainConfig, run_training_subprocess
from memo_pipelines.memory.checkpoints import CheckpointMirror
from memo_pipelines.memory.forget import check_forget_adapter
from memo_pipelines.memory.strategies import STRATEGIES, AdapterJob, UpdateConfig, adapter_digest
from memo_pipelines.storage import layout
from memo_pipelines.storage.layout import version_key
from memo_pipelines.storage.lease import Lease
from memo_pipelines.storage.registry import dir_sha256
from memo_pipelines.storage.workspace import Workspace

Log = Callable[[str], None]


def general_reference(ws: Workspace, base_id: str, size: int | None = None) -> dict[str, list[dict]]:
    """The base model's own answers to the first `size` generic questions (all by default), replayed in every update:
    {"replay": [{question, answer}]}; made once per base and question set, kept in the bucket."""
    key = layout.general_reference_key(base_id)
    questions = general_replay_questions()[:size]
    if not questions:
        return {"replay": []}
    reference = ws.store.get_json(key)
    if reference is None or [r["question"] for r in reference["replay"]][: len(questions)] != questions:  # another question set
        base = LocalChatModel(ws.registry.fetch(base_id))
        reference = {"replay": base_answers(base, questions)}
        ws.store.put_json(key, reference)
    return {"replay": reference["replay"][: len(questions)]}


def library_versions() -> dict[str, str]:
    from importlib.metadata import version as installed

    return {name: installed(name) for name in ("torch", "transformers", "peft", "mergekit", "dagster", "memo-pipelines")}


def train_memory_adapter(ws: Workspace, version: str, base_id: str, config: TrainConfig, update: UpdateConfig,
                         on_progress: Callable[[dict], None], log: Log, launch: dict | None = None, owner: str = "memo") -> dict:
    """Train what this version's update needs, by the strategy named in `update`, and upload the adapters with the plan
    (versions/{v}/adapter_lineage.json).

    The parent is the model promoted after the version before: in a forward run the promoted model, in a backfill of
    an old version the model the registry history says was promoted then. One run at a time trains a version: the
    others find its lease in the bucket and fail (their re-execution succeeds once the lease is released or expired).
    """
    with Lease(ws.store, layout.training_lock_key(version), owner, update.lease_ttl_s) as lease, lease.heartbeat(update.lease_ttl_s / 3):
        def renewing_progress(figures: dict) -> None:
            lease.renew(every_s=update.lease_ttl_s / 3)  # raises at once when the heartbeat found the lease taken over
            on_progress(figures)

        return _train_memory_adapter(ws, version, base_id, config, update, renewing_progress, log, launch, owner)


def train_job(ws: Workspace, job: AdapterJob, config: TrainConfig, on_progress, log, launch: dict | None) -> dict:
    """Train one adapter in a child process and upload it under job.key; returns its training figures."""
    config = dataclasses.replace(config, epochs=job.epochs) if job.epochs else config
    start_dir = ws.registry.fetch(job.start_model)
    scratch = ws.scratch(job.version, "adapter")
    (scratch / "examples.jsonl").write_text("".join(json.dumps({"question": e["question"], "answer": e["answer"]}) + "\n" for e in job.examples))
    # a checkpoint is only resumed by the identical job: same start model, examples and config
    digest = hashlib.sha256(json.dumps([job.start_model, job.examples, asdict(config), job.stop_rows], sort_keys=True).encode()).hexdigest()[:16]
    checkpoint_dir = ws.work_dir / "checkpoints" / job.version / digest
    spec = {"base_dir": str(start_dir), "out_dir": str(scratch / "adapter"), "examples_path": str(scratch / "examples.jsonl"),
            "config": asdict(config), "checkpoint_dir": str(checkpoint_dir), "stop_rows": job.stop_rows, **(launch or {})}
    mirror = CheckpointMirror(ws.store, job.version, digest, checkpoint_dir, log)
    mirror.restore()  # a re-execution on another worker resumes from the object store
    figures = run_training_subprocess(spec, scratch, mirror.progress(on_progress), log)
    ws.store.upload_dir(scratch / "adapter", job.key)
    mirror.clear()
    return figures


def train_leased_job(ws: Workspace, version: str, job: AdapterJob, config: TrainConfig, update: UpdateConfig, on_progress, log,
                     launch: dict | None, owner: str) -> dict:
    """train_job, holding the lease of the job's version too when it is another one (merge retrains an earlier
    version's delta): a run of that version, a backfill, never writes the same delta at the same time."""
    if job.version == version:
        return train_job(ws, job, config, on_progress, log, launch)
    with Lease(ws.store, layout.training_lock_key(job.version), owner, update.lease_ttl_s) as lease, lease.heartbeat(update.lease_ttl_s / 3):
        return train_job(ws, job, config, on_progress, log, launch)


def _train_memory_adapter(ws, version, base_id, config, update: UpdateConfig, on_progress, log, launch, owner: str = "memo") -> dict:
    current_id = ws.registry.promoted_id()
    general = general_reference(ws, base_id, update.general_replay_size)["replay"]
    plan = STRATEGIES[update.strategy].plan(ws, version, base_id, update, general, config.seed)
    pending = plan.record.get("pending_versions_learned") or []
    cost = pending_cost(plan.jobs[0].examples, version, pending, update.pending_cost_factor, config) if len(plan.jobs) == 1 else None
    runs = [train_leased_job(ws, version, job, bounded_config(config, cost), update, on_progress, log, launch, owner) for job in plan.jobs]
    forget_check = check_forget_adapter(ws, plan.start_model, plan.jobs[0].key, plan.forget, ws.scratch(version, "forget-check")) if plan.forget else None
    if forget_check and not forget_check["passed"]:
        log(f"the forget update still gives {forget_check['answered']} of {forget_check['asked']} deleted answers: compacting")
        reason = f"the forget update still gave {forget_check['answered']} of {forget_check['asked']} deleted answers"
        forgot = plan.record["forget"]
        plan = STRATEGIES[update.strategy].compaction(ws, version, base_id, update, general, config.seed, plan.parent, reason, forgot["documents"])
        plan.record["forget"] = forgot
        runs += [train_leased_job(ws, version, job, config, update, on_progress, log, launch, owner) for job in plan.jobs]
    if plan.record.get("unchanged"):
        figures = {"examples": 0, "steps": 0, "seconds": 0.0, "stop_checks": []}
    elif runs:
        figures = runs[-1]
    else:  # every adapter the plan holds was trained by an earlier run (merge: the other versions' deltas)
        own = next((a["key"] for a in plan.adapters if a["version"] == version), plan.adapters[-1]["key"] if plan.adapters else None)
        figures = ws.store.get_json(f"{own}/training.json") if own else None
    if figures is None:
        raise RuntimeError(f"version {version} has no live reflections to train on and no adapter")
    parent_record = ws.registry.get(plan.parent) or {}
    lineage = {"version": version, "parent_model": plan.parent, "start_model": plan.start_model, "library_versions": library_versions(),
               "parent_sha256": parent_record.get("sha256"), "general_replay": len(general), **plan.record,
               "update": {"strategy": plan.strategy, "parameters": update.parameters(), "adapters": plan.adapters,
                          "learned_versions": plan.learned_versions, "compaction": plan.record.get("compaction"),
                          "updates_since_retrain": plan.record.get("updates_since_retrain")},
               "pending_cost": spent(cost, runs[0], parent_update_seconds(ws, plan.parent)) if cost else None,
               "adapters_trained": len(runs), "total_steps": sum(r["steps"] for r in runs),
               "total_training_seconds": round(sum(r["seconds"] for r in runs), 2),
               "forget_check": forget_check, "backfill": plan.parent != current_id, "promoted_at_training": current_id, "train_config": asdict(config)}
    ws.store.put_json(version_key(version, "adapter_lineage.json"), lineage)
    return {**figures, **lineage}


def merge_memory_model(ws: Workspace, version: str, config: MergeConfig) -> dict:
    """The version's candidate: its adapter folded into the model it was trained on, or (strategy merge) every live
    version's delta combined with mergekit; registered with the strategy, its parameters and the adapters it holds. An
    unchanged version's candidate is its parent's record with `unchanged` (why) added."""
    lineage = ws.store.get_json(version_key(version, "adapter_lineage.json"))
    if lineage.get("unchanged"):  # nothing trained: the parent is offered again, and its evaluation judges it for this version
        ws.store.put_json(version_key(version, "candidate.json"), {"model_id": lineage["parent_model"], "parent": lineage["parent_model"],
                                                                   "unchanged": lineage["unchanged"]})
        return {**ws.registry.get(lineage["parent_model"]), "unchanged": lineage["unchanged"]}
    start_dir = ws.registry.fetch(lineage["start_model"])
    adapters = lineage["update"]["adapters"]
    # keyed by the adapters' ETags: mergekit caches loaded models by path for the life of the process, so a re-merge of
    # this version (a backfill or re-execution in the same process) must not read new adapters from an old path
    etags = adapter_digest(*(ws.store.etag(f"{a['key']}/training.json") for a in adapters))
    scratch = ws.scratch(version, f"merge-{etags[:12]}")
    adapter_dirs = [ws.store.download_dir(a["key"], scratch / f"adapter-{i}") for i, a in enumerate(adapters)]
    combined = merge_deltas(start_dir, adapter_dirs, scratch / "model", config, scratch)
    model_id = f"{version}-{dir_sha256(scratch / 'model')[:10]}"
    record = ws.registry.register(
        model_id, scratch / "model",
        {"kind": "candidate", "version": version, "parent": lineage["parent_model"],
         "merge": {"config": asdict(config) if combined["combine"] == "mergekit" else None, **combined},
         "update": {**lineage["update"], "start_model": lineage["start_model"]},
         "training": {"config": lineage["train_config"], "library_versions": lineage["library_versions"]},
         "reflections_etag": ws.store.etag(version_key(version, "reflections.jsonl"))},
    )
    ws.store.put_json(version_key(version, "candidate.json"), {"model_id": model_id, "parent": lineage["parent_model"]})
    shutil.rmtree(scratch, ignore_errors=True)  # the model is in the bucket now; each merge has its own folder
    return record
