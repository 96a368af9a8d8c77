"""Stage 6: the promoted pointer moves to a candidate that passed every gate, by compare-and-set."""

from memo_pipelines.pipeline.workspace import Workspace
from memo_pipelines.storage.layout import version_key


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
