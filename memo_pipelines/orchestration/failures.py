"""Failed runs, recorded per version in the bucket (`versions/{v}/failure.json`) for `memo status` and a person: the
step that failed, its error, and how to retry. Written by the orchestrator's run-failure sensor; a later run of the
version in which those steps succeed clears it."""

import time

from memo_pipelines.storage import layout
from memo_pipelines.storage.objectstore import ObjectStore

# what to look at before retrying, by the step that failed
STEP_HINTS = {
    "corpus_snapshot": "the object store (S3): documents are never dropped for a store fault; retry once it answers",
    "reflections": "the generator endpoint, or the reflection checks (a failed blocking check keeps the rows out of training)",
    "heldout_probes": "the generator endpoint",
    "memory_adapter": "training: a refusal names the setting to change (e.g. max_length); a killed training resumes from its checkpoint",
    "memory_model": "the merge (mergekit) and the work folder's disk space",
    "memory_eval": "the gates: a candidate that failed them fails again unless the data or the thresholds change",
    "promoted_memory": "the registry pointer in the bucket (a concurrent promotion retries by compare-and-set)",
}


def record_failure(store: ObjectStore, version: str, run_id: str, steps: list[dict], message: str, retry: dict, at: float | None = None) -> dict:
    """Record a failed run of `version`: steps [{step, error}], the run's failure message, and retry {ui, cli} (how to
    re-execute it), with a hint per failed step. Replaces the version's earlier record: the newest failure is the one to act on."""
    record = {
        "version": version,
        "run_id": run_id,
        "failed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at or time.time())),
        "steps": steps,
        "message": message,
        "retry": {**retry, "check": [f"{s['step']}: {STEP_HINTS[s['step']]}" for s in steps if s["step"] in STEP_HINTS]},
    }
    store.put_json(layout.failure_key(version), record)
    return record


def clear_failure(store: ObjectStore, version: str, succeeded_steps: set[str]) -> bool:
    """Remove the version's failure record when a run succeeded every step that had failed; True when it was removed."""
    record = failure_record(store, version)
    if record is None or not {s["step"] for s in record["steps"]} <= set(succeeded_steps):
        return False
    store.delete(layout.failure_key(version))
    return True


def failure_record(store: ObjectStore, version: str) -> dict | None:
    return store.get_json(layout.failure_key(version))
