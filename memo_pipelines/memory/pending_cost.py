"""The cost of an update that also learns pending versions, reported and bounded against a normal update.

After a rejection the next continue update trains the new version's reflections and every pending version's in full.
One unlucky gate on a small version turned the next routine update (three short stories) into 512 steps. The normal
update here is the largest of the versions it learns, trained alone with the same replay and generic pairs: the
update plans at most UpdateConfig.pending_cost_factor times that normal update's steps, by a step cap on its job (the
pending rows are all trained, in fewer passes each). What it planned and spent is recorded beside the lineage.
"""

import math
from collections import Counter
from dataclasses import replace

from memo_pipelines.memory.training import TrainConfig
from memo_pipelines.storage.layout import version_key
from memo_pipelines.storage.workspace import Workspace


def planned_steps(examples: int, config: TrainConfig) -> int:
    """The steps training plans for `examples` examples (memory/training.py: epochs passes of batch_size, max_steps cap)."""
    steps = math.ceil(examples / config.batch_size) * config.epochs
    return min(steps, config.max_steps) if config.max_steps else steps


def pending_cost(examples: list[dict], version: str, pending: list[str], factor: float, config: TrainConfig) -> dict | None:
    """For an update of `version` that learns the `pending` versions too, its planned steps against a normal update's
    and the step cap that keeps it within `factor` of it; None when it learns no pending version."""
    if not pending or not examples:
        return None
    by_version = Counter(e.get("version") for e in examples)
    learned = [version, *pending]
    new, largest = sum(by_version[v] for v in learned), max(by_version[v] for v in learned)
    facts = sum(n for v, n in by_version.items() if v is not None)
    # the generic pairs are a fixed share of the fact rows, so a normal update has fewer of them too
    normal_examples = math.ceil(len(examples) * (1 - (new - largest) / facts)) if facts else len(examples)
    normal, unbounded = planned_steps(normal_examples, config), planned_steps(len(examples), config)
    cap = max(1, math.floor(factor * normal))
    return {"pending_versions": pending, "examples": len(examples), "normal_examples": normal_examples, "normal_steps": normal,
            "unbounded_steps": unbounded, "planned_steps": min(unbounded, cap), "bound": factor, "capped": unbounded > cap}


def bounded_config(config: TrainConfig, cost: dict | None) -> TrainConfig:
    """The training config of an update whose cost was bounded: its step cap."""
    return replace(config, max_steps=cost["planned_steps"]) if cost and cost["capped"] else config


def parent_update_seconds(ws: Workspace, parent_id: str | None) -> float | None:
    """The training seconds of the update that made `parent_id` (None for the base model)."""
    parent_version = ws.registry.model_version(parent_id)
    return (ws.store.get_json(version_key(parent_version, "adapter_lineage.json")) or {}).get("total_training_seconds") if parent_version else None


def spent(cost: dict | None, figures: dict, parent_seconds: float | None) -> dict | None:
    """`cost` with the steps and seconds the update spent, against the normal update's steps and the parent's update's
    seconds (the last update measured)."""
    if cost is None:
        return None
    return {**cost, "steps": figures["steps"], "seconds": figures["seconds"], "steps_vs_normal": round(figures["steps"] / cost["normal_steps"], 2),
            "parent_update_seconds": parent_seconds,
            "seconds_vs_parent_update": round(figures["seconds"] / parent_seconds, 2) if parent_seconds else None}
