"""The bucket layout: every key the project reads or writes is built by a function here.

    landing/...                              documents as people drop them (the prefix is configurable)
    versions/index.json                      which records each version has (storage/version_index.py)
    versions/{v}/{record}                    one corpus version's records: manifest, snapshot, reflections, evaluation ...
    versions/{v}/reflections_checks.json     the outcome of the version's blocking reflection checks
    versions/{v}/failure.json                the version's last failed run: step, error, how to retry (cleared by a success)
    versions/{v}/promotion.json              the outcome of the version's promotion step: promoted, or why it was refused
    versions/{v}/raw/{doc_id}                the documents a snapshot read, archived for backfills
    versions/{v}/adapter/...                 the version's LoRA adapter
    versions/{v}/checkpoints/{job}/...       a training job's newest checkpoint (accelerate state), while it trains
    registry/models/{model_id}.json          one model's record and lineage; its files under models/{model_id}/
    registry/promoted.json                   the promoted pointer with its history
    registry/general/{base_id}.json          the base model's answers to generic questions
    cache/reflections/{key}.json             cached reflection step results
    locks/training/{v}.json                  a version's training lease
    sensors/landing/state-{hash}.json.gz     the landing sensor's state
    evals/...                                users' own evaluation sets (JSONL of {question, answer})
"""

LANDING_PREFIX = "landing/"
VERSIONS_PREFIX = "versions/"
VERSION_INDEX = "versions/index.json"
MODELS_PREFIX = "registry/models/"
PROMOTED_POINTER = "registry/promoted.json"
REFLECTION_CACHE_PREFIX = "cache/reflections/"
SENSOR_STATE_PREFIX = "sensors/landing/"
USER_EVALS_PREFIX = "evals/"


def version_key(version: str, name: str) -> str:
    """A record of one corpus version: `manifest.json`, `snapshot.json`, `reflections.jsonl`, `probes.jsonl`, ..."""
    return f"{VERSIONS_PREFIX}{version}/{name}"


REFLECTION_CHECKS = "reflections_checks.json"
FAILURE = "failure.json"
PROMOTION = "promotion.json"
# documents of the version re-uploaded under their key with the text they already had: {doc_id: version whose text it is}
UNCHANGED = "unchanged.json"
# the snapshot in brief, for readers that need no text: {"documents": {doc_id: sha256 of its text}, "nothing_to_learn"}
SNAPSHOT_SUMMARY = "snapshot_summary.json"


def reflection_checks_key(version: str) -> str:
    return version_key(version, REFLECTION_CHECKS)


def failure_key(version: str) -> str:
    return version_key(version, FAILURE)


def promotion_key(version: str) -> str:
    return version_key(version, PROMOTION)


def doc_id_for(key: str, landing_prefix: str) -> str:
    """A document's id: its key below the landing prefix."""
    return key[len(landing_prefix):] if key.startswith(landing_prefix) else key


def archived_document_key(version: str, doc_id: str) -> str:
    return version_key(version, f"raw/{doc_id}")


def version_of_record(key: str) -> tuple[str, str] | None:
    """(version, record name) when key is a version's record, versions/{version}/{name}; None for anything else: a
    document archived under versions/{version}/raw/ that shares a record's name, an adapter file, the index."""
    parts = key.split("/")
    if len(parts) == 3 and f"{parts[0]}/" == VERSIONS_PREFIX and parts[1] and parts[2]:
        return parts[1], parts[2]
    return None


def model_record_key(model_id: str) -> str:
    return f"{MODELS_PREFIX}{model_id}.json"


def model_files_prefix(model_id: str) -> str:
    return f"models/{model_id}"


def general_reference_key(base_id: str) -> str:
    return f"registry/general/{base_id}.json"


def training_checkpoint_prefix(version: str, job_digest: str) -> str:
    return version_key(version, f"checkpoints/{job_digest}")


def training_lock_key(version: str) -> str:
    return f"locks/training/{version}.json"


def sensor_state_key(digest: str) -> str:
    return f"{SENSOR_STATE_PREFIX}state-{digest}.json.gz"


def general_baseline_key(base_id: str, questions: int) -> str:
    """The base model's figures on the general-ability questions, measured once per base model and question count."""
    return f"registry/general/{base_id}-general-{questions}.json"
