"""One library call per pipeline stage, Dagster-free: each reads its inputs from the object store and writes its
outputs under `versions/{version}/`, so a stage can be re-run, backfilled or resumed on its own."""

import hashlib
import json
import random
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from memo_pipelines.corpus.snapshot import Snapshot, build_snapshot, doc_id_for, vanished
from memo_pipelines.evaluation.gates import GENERAL_GUARD, GENERAL_REPLAY, EvalReport, Gates, base_answers, evaluate_candidate
from memo_pipelines.llm.backends import ChatModel, LocalChatModel
from memo_pipelines.memory.merging import MergeConfig, merge_into_promoted
from memo_pipelines.storage.lease import Lease
from memo_pipelines.storage import layout
from memo_pipelines.storage.layout import version_key
from memo_pipelines.storage.objectstore import ObjectStore
from memo_pipelines.reflections.synthesis import SynthesisConfig, synthesise_reflections
from memo_pipelines.storage.registry import ModelRegistry, dir_sha256
from memo_pipelines.memory.training import TrainConfig, run_training_subprocess

Log = Callable[[str], None]


def version_records(store: ObjectStore, names) -> dict[str, list[str]]:
    """{version: the records among `names` it has}, counting only versions/{version}/{name} itself: a document archived
    under versions/{version}/raw/ that happens to share a record's name is not that record."""
    records: dict[str, list[str]] = {}
    for obj in store.list_objects(layout.VERSIONS_PREFIX):
        if found := layout.version_of_record(obj.key, names):
            records.setdefault(found[0], []).append(found[1])
    return records


@dataclass
class Workspace:
    """Where a run keeps its state: the bucket, the registry over it, and a local scratch folder."""

    store: ObjectStore
    registry: ModelRegistry
    work_dir: Path
    landing_prefix: str = layout.LANDING_PREFIX

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
    listed = {entry["key"]: entry.get("etag") for entry in manifest["objects"]}

    def fetch_as_listed(key: str) -> tuple[bytes, str]:
        """The object as the manifest listed it: from the landing folder while its ETag matches, else from the copy
        this version archived when it first read it, so a backfill rebuilds the version from what it really held."""
        archived = layout.archived_document_key(version, doc_id_for(key, ws.landing_prefix))
        try:
            data, etag = ws.store.get_object(key)
        except Exception as error:
            if not vanished(error):
                raise
        else:
            if not listed.get(key) or etag == listed[key]:
                ws.store.put_bytes(archived, data)
                return data, etag
        data, _ = ws.store.get_object(archived)  # NoSuchKey here: deleted or rewritten before this version ever read it
        return data, listed[key]

    snapshot = build_snapshot(version, manifest["objects"], fetch_as_listed, ws.landing_prefix, max_bytes)
    snapshot.deleted = [doc_id_for(key, ws.landing_prefix) for key in manifest.get("deleted", [])]
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
        snapshot.documents, version, generator, strategy, PrefixedCache(ws.store, layout.REFLECTION_CACHE_PREFIX), progress, config
    )
    ws.store.put_jsonl(version_key(version, "reflections.jsonl"), rows)
    figures = {**stats.to_json(), "strategy": strategy, "generator": generator.name, "config": asdict(config)}
    ws.store.put_json(version_key(version, "reflections_stats.json"), figures)
    return rows, figures


def load_reflections(ws: Workspace, version: str) -> list[dict]:
    return ws.store.get_jsonl(version_key(version, "reflections.jsonl"))


def earlier_versions(ws: Workspace, version: str) -> list[str]:
    return sorted(v for v in version_records(ws.store, ["reflections.jsonl"]) if v < version)


# -- 3. memory adapter --------------------------------------------------------------------------------------------


def general_reference(ws: Workspace, base_id: str) -> dict[str, list[dict]]:
    """The base model's own answers to generic questions: {"replay": trained on, "guard": held out for the gate}."""
    key = layout.general_reference_key(base_id)
    reference = ws.store.get_json(key)
    if reference is None:
        base = LocalChatModel(ws.registry.fetch(base_id))
        reference = {"replay": base_answers(base, GENERAL_REPLAY), "guard": base_answers(base, GENERAL_GUARD)}
        ws.store.put_json(key, reference)
    return reference


def document_changes(ws: Workspace, up_to: str) -> dict[str, list[tuple[str, str]]]:
    """{doc_id: [(version, "landed" | "deleted"), ...]} from the manifests of every version up to and including up_to."""
    changes: dict[str, list[tuple[str, str]]] = {}
    for version in sorted(v for v in version_records(ws.store, ["manifest.json"]) if v <= up_to):
        manifest = ws.store.get_json(version_key(version, "manifest.json"))
        for entry in manifest["objects"]:
            changes.setdefault(doc_id_for(entry["key"], ws.landing_prefix), []).append((version, "landed"))
        for key in manifest.get("deleted", []):
            changes.setdefault(doc_id_for(key, ws.landing_prefix), []).append((version, "deleted"))
    return changes


def live_earlier_reflections(ws: Workspace, version: str) -> tuple[dict[str, list[dict]], dict[str, int]]:
    """Earlier versions' reflections whose documents still stand as of `version`, and how many were retired and why.

    A reflection of version u is retired when one of its source documents was deleted, or rewritten (a newer ETag,
    whose reflections replace it), in a version after u and up to `version`. Decided from the manifests alone, so a
    backfill of an old version sees the corpus as it was then.
    """
    changes = document_changes(ws, version)
    live, retired = {}, {"deleted": 0, "rewritten": 0}
    for earlier in earlier_versions(ws, version):
        kept = []
        for row in load_reflections(ws, earlier):
            later = [kind for doc in row["source_doc_ids"] for v, kind in changes.get(doc, []) if earlier < v <= version]
            if "deleted" in later:
                retired["deleted"] += 1
            elif later:
                retired["rewritten"] += 1
            else:
                kept.append(row)
        live[earlier] = kept
    return live, retired


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


# -- 4. merged memory model ---------------------------------------------------------------------------------------


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


# -- 5. evaluation ------------------------------------------------------------------------------------------------


def evaluate_memory_model(ws: Workspace, version: str, base_id: str, gates: Gates, sample_size: int) -> tuple[EvalReport, list[dict], dict]:
    candidate_info = ws.store.get_json(version_key(version, "candidate.json"))
    candidate = LocalChatModel(ws.registry.fetch(candidate_info["model_id"]))
    promoted = LocalChatModel(ws.registry.fetch(candidate_info["parent"]))
    live, _ = live_earlier_reflections(ws, version)  # facts of deleted or rewritten documents are not retention targets
    earlier = {v: rows for v, rows in live.items() if rows}
    report = evaluate_candidate(candidate, promoted, load_reflections(ws, version), earlier, general_reference(ws, base_id)["guard"], sample_size)
    results = report.gate_results(gates)
    ws.store.put_json(version_key(version, "evaluation.json"), {"candidate": candidate_info, "report": report.to_json(), "gates": results})
    return report, results, candidate_info


# -- 6. promotion -------------------------------------------------------------------------------------------------


def promote_version(ws: Workspace, version: str, allow_backfill_promotion: bool = False) -> dict:
    """Promote this version's candidate if every gate passed and no model of this or a newer version holds the pointer.

    Returns {"promoted": bool, "reason", "model_id", "parent", "current"}. A backfilled version is not promoted over a
    newer version's model unless allow_backfill_promotion is set, and then it moves the pointer explicitly, in history.
    """
    evaluation = ws.store.get_json(version_key(version, "evaluation.json"))
    if evaluation is None:
        raise RuntimeError(f"version {version} has no evaluation; refusing to promote")
    failed = [g["name"] for g in evaluation["gates"] if not g["passed"]]
    if failed:
        raise RuntimeError(f"version {version} failed its gates {failed}; refusing to promote")
    candidate = evaluation["candidate"]
    current = ws.registry.promoted_id()
    current_version = ws.registry.model_version(current)
    outcome = {"model_id": candidate["model_id"], "parent": candidate["parent"], "current": current}
    if current == candidate["model_id"]:
        # an earlier attempt of this step moved the pointer and then died: re-execution is a no-op
        return {**outcome, "promoted": True, "reason": f"{current} is already the promoted model"}
    if current_version is not None and current_version >= version and not allow_backfill_promotion:
        held_by = f"newer version {current_version}" if current_version > version else f"version {version}"
        return {**outcome, "promoted": False,
                "reason": f"not promoted: {held_by} is promoted ({current}); set allow_backfill_promotion to move the pointer to this backfill"}
    backfill = current != candidate["parent"] and allow_backfill_promotion
    reason = f"version {version} passed its gates" + (f" (backfill promoted over {current})" if backfill else "")
    ws.registry.promote(candidate["model_id"], reason, expected_current=current if backfill else candidate["parent"])
    return {**outcome, "promoted": True, "reason": reason}
