"""Update strategies, chosen by name in config (UpdateConfig.strategy, looked up in STRATEGIES): what a version's
memory update trains, on top of which model, and how its candidate is built from the adapters.

  continue  one adapter on top of the model promoted before the version: its reflections, those of every pending
            version (rejected or not yet promoted), a per-version share of each learned version's reflections as
            replay, and generic pairs; folded into that model. A deleted document is unlearned by a forget update
            (forget.py: "I don't know" to its questions, on top of the same model) that is checked, and becomes a full
            retrain (a compaction) when the check finds a deleted fact still given. A rewritten document is updated the
            same way: its new rows are learnt, and the questions of its earlier text that neither a live row asks nor
            its new text still answers are declined. Every compact_every updates the update is a compaction.
  merge     one delta per version, each trained from the fixed anchor (the base) on that version's live reflections
            only; the candidate combines every live version's delta with mergekit. A version costs the same whatever the
            history; a deleted or rewritten document retrains only its version's delta.
  retrain   one adapter from the base on every live reflection: the reference, and what compaction runs.
"""

import hashlib
import json
import math
import random
from dataclasses import asdict, dataclass, field

from memo_pipelines.evaluation.metrics import sample_facts
from memo_pipelines.storage.deletions import deleted_documents, forget_targets
from memo_pipelines.qa import IDK, is_idk
from memo_pipelines.reflections.negatives import invented_name_questions
from memo_pipelines.storage.history import learned_versions, live_reflections, pending_versions
from memo_pipelines.storage.layout import version_key
from memo_pipelines.storage.workspace import Workspace


@dataclass(frozen=True)
class UpdateConfig:
    """How a version's memory update is made: the strategy by name and what it trains on besides the new reflections."""

    strategy: str = "continue"  # a name in STRATEGIES
    replay_size: int = 16  # continue: at least this many reflections replayed from each learned version (all, if it has fewer)
    replay_share: float = 0.25  # continue: and at least this share of each learned version's live reflections
    # continue: the most rows replayed in all. Past it every version's share shrinks in proportion (one row at least), so
    # an update's cost follows its new rows, not the number of versions before it; 0: no limit
    replay_limit: int = 512
    # generic questions (evaluation/general.py) whose base-model answers are replayed, sampled to general_mix of every
    # training set: fewer pairs or a smaller share lose more general ability (what the general_ability gate measures)
    general_replay_size: int = 165
    general_mix: float = 0.3
    # continue: an update that also learns pending (rejected) versions plans at most this many times the steps of a
    # normal update, the largest of its versions trained alone (pending_cost.py)
    pending_cost_factor: float = 2.0
    compact_every: int = 0  # continue: > 0 makes every N-th update since the last full retrain one (a compaction)
    # continue: how a deleted or rewritten document's old facts leave the memory. "unlearn": a forget update on top of
    # the promoted model, checked, and a compaction only when the check fails; "compact": always a full retrain from the base
    forget: str = "unlearn"
    # continue: passes over a forget update's examples when it brings no new rows (so no early stop): "I don't know" is one
    # short answer, learnt in a few passes, and the check after training catches a forget that did not take
    forget_epochs: int = 4
    stop_sample: int = 16  # training facts whose greedy recall decides when training stops (TrainConfig.stop_*)
    lease_ttl_s: float = 900.0

    def __post_init__(self):
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown update strategy {self.strategy!r}; choose one of {sorted(STRATEGIES)}")
        if self.forget not in FORGET_MODES:
            raise ValueError(f"unknown forget mode {self.forget!r}; choose one of {FORGET_MODES}")
        if not 0 <= self.replay_share <= 1 or not 0 <= self.general_mix < 1:
            raise ValueError("replay_share must be in [0, 1] and general_mix in [0, 1)")
        if self.replay_limit < 0:
            raise ValueError("replay_limit must be >= 0 (0: no limit)")
        if self.pending_cost_factor < 1:
            raise ValueError("pending_cost_factor must be >= 1: an update that learns pending versions costs at least a normal one")

    def parameters(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "lease_ttl_s"}


FORGET_MODES = ("unlearn", "compact")


@dataclass
class AdapterJob:
    """One adapter to train: stored under `key`, trained on top of registered model `start_model`."""

    key: str
    version: str  # whose reflections it learns (merge: its delta's version)
    start_model: str
    examples: list[dict]
    stop_rows: list[dict]
    epochs: int | None = None  # passes over the examples, when not the trainer's


@dataclass
class UpdatePlan:
    strategy: str
    parent: str  # the model the candidate would replace: promoted after the version before
    start_model: str  # what the candidate is built on: the parent (continue) or the base (merge, retrain)
    jobs: list[AdapterJob]  # adapters still to train (merge reuses deltas already trained on the same rows)
    adapters: list[dict]  # every adapter the candidate combines: {"version", "key", "reflections"}
    learned_versions: list[str]  # versions whose reflections the candidate learns in full
    record: dict = field(default_factory=dict)  # what the registry keeps about this update
    forget: list[dict] = field(default_factory=list)  # continue's forget update: the questions its candidate must no longer answer


def general_rows(general: list[dict], facts: int, mix: float, seed: int = 0) -> list[dict]:
    """Generic pairs making `mix` of the training set beside `facts` rows: a seeded sample of the pool without repeats
    while the pool is large enough (so an update's cost follows its data), repeated past that."""
    if not general or mix <= 0:
        return []
    wanted = max(1, math.ceil(mix * facts / (1 - mix)))
    order = random.Random(f"general-{seed}-{facts}").sample(general, len(general))
    return [order[i % len(order)] for i in range(wanted)]


MIN_STOP_ROWS = 8  # below this many answerable rows, a version trains every planned step


def stop_rows(rows: list[dict], size: int, seed: int) -> list[dict]:
    """Up to `size` of the rows the early stop asks (TrainConfig.stop_*): a seeded sample of the fact rows, topped up
    from the other answerable rows (reverse lookups, summaries) when there are fewer facts than `size`; none, so every
    planned step is trained, when fewer than MIN_STOP_ROWS are answerable (a recall of a handful of rows moves in
    coarse steps and says little about the rest)."""
    answerable = [r for r in rows if r.get("key_answer") and r.get("step") != "unanswerable" and not is_idk(r["key_answer"])]
    chosen = sample_facts(answerable, size, seed)
    if len(chosen) < size:
        ids = {r["id"] for r in chosen}
        rest = sorted((r for r in answerable if r["id"] not in ids), key=lambda r: r["id"])
        chosen += random.Random(f"stop-{seed}").sample(rest, min(len(rest), size - len(chosen)))
    if len(chosen) < MIN_STOP_ROWS:
        return []
    return [{"question": r["question"], "key_answer": r["key_answer"]} for r in chosen] + decline_rows(rows, size // 2, seed)


def forget_stop_rows(stop: list[dict], targets: list[dict], size: int, seed: int) -> list[dict]:
    """The early stop's rows for an update that also forgets (a rewritten document): a sample of the questions it must
    now decline joins the decline questions, so the state kept is one that declines them (TrainConfig.stop_decline)."""
    if not stop or not targets:
        return stop
    forgotten = random.Random(f"forget-{seed}").sample(targets, min(len(targets), max(1, size // 2)))
    return stop + [{"question": t["question"], "key_answer": IDK} for t in forgotten]


def decline_rows(rows: list[dict], size: int, seed: int) -> list[dict]:
    """Up to `size` questions the memory should decline, for the trainer to keep a state that still does
    (TrainConfig.stop_decline): the version's fact questions about an invented name (reflections/negatives.py), key
    answer "I don't know". Never trained on, and drawn with their own seed, apart from the gates' abstention probes."""
    return [{"question": question, "key_answer": IDK} for question in invented_name_questions(rows, size, f"decline-{seed}")]


def per_version_replay(live: dict[str, list[dict]], versions: list[str], update: UpdateConfig, seed: int, salt: str,
                       new: list[dict] = ()) -> dict[str, list[dict]]:
    """From each version, max(replay_size, replay_share of its rows) of its live reflections, seeded, all of them scaled
    down to replay_limit rows in all: every earlier version keeps a share of the replay however long the history grows,
    and the replay stops growing with it. Half of each version's replay (rounded up) is the rows whose questions are
    nearest the new rows' (the facts the update is likeliest to overwrite: "the manager of the Lorne plant" against "the
    manager of the Kesby plant"), the rest a random sample."""
    near = nearest_questions(live, versions, new)
    takes = {v: min(len(live.get(v, [])), max(update.replay_size, math.ceil(update.replay_share * len(live.get(v, []))))) for v in versions}
    if update.replay_limit and sum(takes.values()) > update.replay_limit:
        scale = update.replay_limit / sum(takes.values())
        takes = {v: min(take, max(1, math.floor(take * scale))) for v, take in takes.items()}
    replay = {}
    for v in versions:
        rows = live.get(v, [])
        take = takes[v]
        if take == len(rows):  # everything is replayed: nothing to choose
            replay[v] = random.Random(f"{seed}-{salt}-{v}").sample(rows, take)
            continue
        targeted = [rows[i] for i in near.get(v, [])[: (take + 1) // 2]]
        chosen = {id(r) for r in targeted}
        rest = [r for r in rows if id(r) not in chosen]
        replay[v] = targeted + random.Random(f"{seed}-{salt}-{v}").sample(rest, take - len(targeted))
    return replay


def nearest_questions(live: dict[str, list[dict]], versions: list[str], new: list[dict], limit: int = 256) -> dict[str, list[int]]:
    """Per version, the indices of its rows whose question shares character 5-grams with some new row's question, most
    similar first (the new rows' first `limit` only: the cost stays linear in the history)."""
    from memo_pipelines.corpus.dedup import jaccard, shingles

    probes = [shingles(r["question"].lower(), 5, "chars") for r in list(new)[:limit]]
    if not probes:
        return {}
    out = {}
    for v in versions:
        scored = []
        for i, row in enumerate(live.get(v, [])):
            grams = shingles(row["question"].lower(), 5, "chars")
            score = max(jaccard(grams, p) for p in probes)
            if score > 0:
                scored.append((-score, i))
        out[v] = [i for _, i in sorted(scored)]
    return out


def adapter_digest(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


class Retrain:
    name = "retrain"

    def plan(self, ws: Workspace, version: str, base_id: str, update: UpdateConfig, general: list[dict], seed: int) -> UpdatePlan:
        live, retired = live_reflections(ws.store, version, ws.landing_prefix)
        rows = [r for v in sorted(live) for r in live[v]]
        learned = sorted(live)  # a version whose documents were all deleted is learned as nothing, not pending
        job = AdapterJob(version_key(version, "adapter"), version, base_id, rows + general_rows(general, len(rows), update.general_mix, seed),
                         stop_rows(rows, update.stop_sample, seed))
        earlier = {v: len(live[v]) for v in sorted(live) if v != version}  # every earlier live reflection is trained again in full
        record = {"new_reflections": len(live.get(version, [])), "trained_reflections": len(rows), "replay_reflections": sum(earlier.values()),
                  "replay_by_version": earlier, "retired_reflections": retired, "updates_since_retrain": 0}
        return UpdatePlan(self.name, ws.registry.promoted_before(version), base_id, [job],
                          [{"version": version, "key": job.key, "reflections": len(rows)}], learned, record)


class Continue:
    name = "continue"

    def plan(self, ws: Workspace, version: str, base_id: str, update: UpdateConfig, general: list[dict], seed: int) -> UpdatePlan:
        parent = ws.registry.promoted_before(version)
        parent_record = ws.registry.get(parent) or {}
        since = parent_record.get("update", {}).get("updates_since_retrain", 0 if parent_record.get("version") is None else 1)
        deleted, rewritten = deleted_documents(ws.store, parent_record.get("version"), version, ws.landing_prefix)
        changed = set(deleted) | set(rewritten)
        forgetting = sorted(changed) if update.forget == "unlearn" else []
        compaction = (f"{len(changed)} documents the parent learned were deleted or rewritten" if changed and not forgetting
                      else f"every {update.compact_every} updates" if update.compact_every and since + 1 >= update.compact_every else None)
        if compaction:
            return self.compaction(ws, version, base_id, update, general, seed, parent, compaction, changed)
        live, retired = live_reflections(ws.store, version, ws.landing_prefix)
        targets = forget_targets(ws.store, forgetting, version, live, ws.landing_prefix)
        unlearned = pending_versions(ws.registry, version, parent)
        pending = [v for v in unlearned if live.get(v)]
        learned = [v for v in learned_versions(ws.registry, parent) if v in live]
        new = live.get(version, []) + [r for v in pending for r in live[v]]  # live: rows that failed a blocking check are left out
        if not new and not targets and parent is not None:
            # documents already learned, or deletions of documents none of whose rows is live: training on replay alone
            # would spend an update's minutes to change nothing, so the candidate is the parent itself
            record = {"new_reflections": 0, "pending_versions_learned": [], "trained_reflections": 0, "replay_reflections": 0,
                      "replay_by_version": {}, "retired_reflections": retired, "updates_since_retrain": since, "compaction": None,
                      "forget": None, "unchanged": "the version brings nothing to learn and nothing to forget: its candidate is the parent model"}
            return UpdatePlan(self.name, parent, parent, [], [], sorted(set(learned) | {version}), record)
        # the replay leans to the live facts nearest the forgotten questions as well as the new ones
        replay = per_version_replay(live, learned, update, seed, version, new + targets)
        replayed = [r for v in learned for r in replay[v]]
        trained = new + [{"question": t["question"], "answer": t["answer"]} for t in targets]
        job = AdapterJob(version_key(version, "adapter"), version, parent,
                         trained + replayed + general_rows(general, len(trained) + len(replayed), update.general_mix, seed),
                         forget_stop_rows(stop_rows(new, update.stop_sample, seed), targets, update.stop_sample, seed),
                         update.forget_epochs if targets and not new else None)
        record = {"new_reflections": len(new), "pending_versions_learned": pending, "trained_reflections": len(trained),
                  "replay_reflections": len(replayed), "replay_by_version": {v: len(rows) for v, rows in replay.items()},
                  "retired_reflections": retired, "updates_since_retrain": since + 1, "compaction": None,
                  "forget": {"documents": forgetting, "questions": len(targets)} if forgetting else None}
        return UpdatePlan(self.name, parent, parent, [job], [{"version": version, "key": job.key, "reflections": len(trained)}],
                          sorted(set(learned) | set(unlearned) | {version}), record, targets)

    def compaction(self, ws: Workspace, version: str, base_id: str, update: UpdateConfig, general: list[dict], seed: int, parent: str | None,
                   reason: str, changed) -> UpdatePlan:
        """A full retrain from the base on every live reflection, recorded as this strategy's compaction."""
        plan = Retrain().plan(ws, version, base_id, update, general, seed)
        plan.strategy, plan.parent = self.name, parent
        plan.record.update(compaction=reason, changed_documents=sorted(changed))
        return plan


class Merge:
    name = "merge"

    def plan(self, ws: Workspace, version: str, base_id: str, update: UpdateConfig, general: list[dict], seed: int) -> UpdatePlan:
        live, retired = live_reflections(ws.store, version, ws.landing_prefix)
        jobs, adapters = [], []
        for v in sorted(v for v in live if live[v]):
            examples = live[v] + general_rows(general, len(live[v]), update.general_mix, seed)
            # a delta is keyed by the rows it learns: a version whose documents were deleted or rewritten gets a new one
            key = version_key(v, f"deltas/{adapter_digest(base_id, examples, seed)}")
            adapters.append({"version": v, "key": key, "reflections": len(live[v]), "retrained": v != version and not ws.store.exists(f"{key}/training.json")})
            if not ws.store.exists(f"{key}/training.json"):
                jobs.append(AdapterJob(key, v, base_id, examples, stop_rows(live[v], update.stop_sample, seed)))
        record = {"new_reflections": len(live.get(version, [])), "trained_reflections": sum(len(j.examples) for j in jobs), "replay_reflections": 0,
                  "replay_by_version": {}, "retired_reflections": retired, "deltas_trained": [j.version for j in jobs],
                  "deltas_retrained_for_changes": [a["version"] for a in adapters if a["retrained"]]}
        return UpdatePlan(self.name, ws.registry.promoted_before(version), base_id, jobs, adapters, sorted(live), record)


STRATEGIES = {strategy.name: strategy for strategy in (Continue(), Merge(), Retrain())}
