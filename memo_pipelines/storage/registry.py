"""The model registry, kept in the object store: every model with its lineage, and a promoted pointer with history."""

import hashlib
import json
import shutil
import time
from pathlib import Path

from memo_pipelines.storage import layout
from memo_pipelines.storage.objectstore import ObjectStore, WriteConflict


def dir_sha256(model_dir: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(Path(model_dir).rglob("*.safetensors")):
        digest.update(path.name.encode())
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


class PromotionRefused(RuntimeError):
    pass


class ModelRegistry:
    def __init__(self, store: ObjectStore, cache_dir: Path):
        self.store = store
        self.cache_dir = Path(cache_dir)

    # -- models ---------------------------------------------------------------------------------------------------
    def register(self, model_id: str, model_dir: Path, meta: dict) -> dict:
        """Upload a model and record its lineage; idempotent for the same id."""
        record = {"model_id": model_id, "uri": f"s3://{self.store.bucket}/{layout.model_files_prefix(model_id)}", "sha256": dir_sha256(model_dir),
                  "registered_at": time.time(), **meta}
        self.store.upload_dir(Path(model_dir), layout.model_files_prefix(model_id))
        self.store.put_json(layout.model_record_key(model_id), record)
        return record

    def get(self, model_id: str) -> dict | None:
        return self.store.get_json(layout.model_record_key(model_id))

    def models(self) -> list[dict]:
        return [self.store.get_json(o.key) for o in self.store.list_objects(layout.MODELS_PREFIX)]

    def fetch(self, model_id: str) -> Path:
        """Local directory of a registered model, downloaded once into the cache."""
        return self.store.download_dir(layout.model_files_prefix(model_id), self.cache_dir / model_id)

    # -- promotion ------------------------------------------------------------------------------------------------
    def promote_version(self, version: str, allow_backfill_promotion: bool = False) -> dict:
        """Promote this version's candidate if every gate passed and no model of this or a newer version holds the pointer.

        Returns {"promoted": bool, "reason", "model_id", "parent", "current"}. A backfilled version is not promoted over a
        newer version's model unless allow_backfill_promotion is set, and then it moves the pointer explicitly, in history.
        """
        evaluation = self.store.get_json(layout.version_key(version, "evaluation.json"))
        if evaluation is None:
            raise RuntimeError(f"version {version} has no evaluation; refusing to promote")
        failed = [g["name"] for g in evaluation["gates"] if not g["passed"]]
        if failed:
            raise RuntimeError(f"version {version} failed its gates {failed}; refusing to promote")
        candidate = evaluation["candidate"]
        current = self.promoted_id()
        current_version = self.model_version(current)
        outcome = {"model_id": candidate["model_id"], "parent": candidate["parent"], "current": current}
        if current == candidate["model_id"]:
            # an earlier attempt of this step moved the pointer and then died: re-execution is a no-op
            return self._record_promotion(version, {**outcome, "promoted": True, "reason": f"{current} is already the promoted model"})
        if current_version is not None and current_version >= version and not allow_backfill_promotion:
            held_by = f"newer version {current_version}" if current_version > version else f"version {version}"
            return self._record_promotion(version, {**outcome, "promoted": False,
                                                    "reason": f"not promoted: {held_by} is promoted ({current}); set allow_backfill_promotion to move the pointer to this backfill"})
        backfill = current != candidate["parent"] and allow_backfill_promotion
        reason = f"version {version} passed its gates" + (f" (backfill promoted over {current})" if backfill else "")
        self.promote(candidate["model_id"], reason, expected_current=current if backfill else candidate["parent"])
        return self._record_promotion(version, {**outcome, "promoted": True, "reason": reason})

    def _record_promotion(self, version: str, outcome: dict) -> dict:
        """Keep the outcome beside the version's records: a refusal that fails no step is read there by `memo wait`."""
        self.store.put_json(layout.promotion_key(version), {**outcome, "at": time.time()})
        return outcome

    def _read_pointer(self) -> tuple[dict, str | None]:
        return self.store.get_json_versioned(layout.PROMOTED_POINTER, default={"model_id": None, "stack": [], "history": []})

    def pointer(self) -> dict:
        """{"model_id": current, "stack": promoted ids, oldest first (rollback pops), "history": every move}."""
        return self._read_pointer()[0]

    def promoted_id(self) -> str | None:
        return self.pointer()["model_id"]

    def model_version(self, model_id: str | None) -> str | None:
        """The corpus version a model was trained for; None for the base model."""
        record = self.get(model_id) if model_id else None
        return record.get("version") if record else None

    def promoted_before(self, version: str) -> str | None:
        """The model the pointer held last among models of versions older than `version` (the base counts as oldest).

        What version N trains on: the current pointer in a forward run, the model promoted after N-1 in a backfill.
        """
        for entry in reversed(self.pointer()["history"]):
            earlier = self.model_version(entry["model_id"])
            if earlier is None or earlier < version:
                return entry["model_id"]
        return None

    def _write_pointer(self, stack: list[str], history: list[dict], model_id: str, reason: str, etag: str | None) -> dict:
        entry = {"model_id": model_id, "at": time.time(), "reason": reason}
        body = json.dumps({"model_id": model_id, "stack": stack, "history": history + [entry]}, indent=1, sort_keys=True).encode()
        # one conditional PUT of one small object: readers see the old pointer or the new one, never a mix, and a
        # writer that read the pointer before another writer moved it loses instead of overwriting that move
        try:
            self.store.put_bytes_if(layout.PROMOTED_POINTER, body, etag)
        except WriteConflict:
            raise PromotionRefused("the promoted pointer moved while this promotion was being decided; nothing was changed") from None
        return entry

    def promote(self, model_id: str, reason: str, expected_current: str | None = ...) -> dict:
        """Move the pointer to model_id; refuses if the pointer moved since the candidate was trained on it."""
        if self.get(model_id) is None:
            raise PromotionRefused(f"model {model_id} is not registered")
        pointer, etag = self._read_pointer()
        if expected_current is not ... and pointer["model_id"] != expected_current:
            raise PromotionRefused(
                f"promoted model is {pointer['model_id']}, but the candidate was trained on {expected_current}; retrain it on the current model"
            )
        return self._write_pointer(pointer["stack"] + [model_id], pointer["history"], model_id, reason, etag)

    def rollback(self, reason: str = "rollback") -> str:
        """Point back at the model promoted before the current one."""
        pointer, etag = self._read_pointer()
        if len(pointer["stack"]) < 2:
            raise PromotionRefused("no earlier promoted model to roll back to")
        stack = pointer["stack"][:-1]
        self._write_pointer(stack, pointer["history"], stack[-1], reason, etag)
        return stack[-1]

    def prune_candidates(self, keep_latest: int = 2) -> list[str]:
        """Delete candidates that were never promoted, except the newest keep_latest and any whose version is still
        deciding on it (awaiting_decision); promoted models are kept for rollback."""
        ever_promoted = {h["model_id"] for h in self.pointer()["history"]}
        candidates = sorted((m for m in self.models() if m["model_id"] not in ever_promoted and not self.awaiting_decision(m)),
                            key=lambda m: m["registered_at"])
        pruned = [m["model_id"] for m in candidates[: max(0, len(candidates) - keep_latest)]]
        for model_id in pruned:
            for obj in list(self.store.list_objects(layout.model_files_prefix(model_id) + "/")):
                self.store.delete(obj.key)
            self.store.delete(layout.model_record_key(model_id))
            shutil.rmtree(self.cache_dir / model_id, ignore_errors=True)
        return pruned

    def awaiting_decision(self, record: dict) -> bool:
        """The model is its version's current candidate (candidate.json) and its evaluation has not judged it yet, or
        it passed and its promotion step has not run."""
        version = record.get("version")
        if not version or (self.store.get_json(layout.version_key(version, "candidate.json")) or {}).get("model_id") != record["model_id"]:
            return False
        evaluation = self.store.get_json(layout.version_key(version, "evaluation.json"))
        if evaluation is None or evaluation["candidate"]["model_id"] != record["model_id"]:
            return True
        promotion = self.store.get_json(layout.promotion_key(version))
        return all(g["passed"] for g in evaluation["gates"]) and (promotion or {}).get("model_id") != record["model_id"]

    def ensure_base(self, base_id: str, base_dir: Path) -> str:
        """Register and promote the base memory model when the registry is empty."""
        if self.promoted_id() is None:
            if self.get(base_id) is None:
                self.register(base_id, base_dir, {"kind": "base", "parent": None, "version": None})
            self.promote(base_id, "initial base memory model", expected_current=None)
        return self.promoted_id()
