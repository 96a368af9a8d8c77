"""`memo status`: what a person wants to know about the pipeline, read from the bucket (and from the Dagster instance
when DAGSTER_HOME names one): every corpus version with its state, the promoted model, quarantined documents and the
report card of every candidate (held-out recall, ACC, BWT, forgetting, abstention, general ability) with the R matrix
of the promoted model's lineage."""

import time
from dataclasses import dataclass, field

from memo_pipelines.storage.history import learned_versions, version_records
from memo_pipelines.storage.objectstore import ObjectStore
from memo_pipelines.storage.layout import FAILURE, LANDING_PREFIX, REFLECTION_CHECKS, SNAPSHOT_SUMMARY, doc_id_for, failure_key, promotion_key, reflection_checks_key, version_key
from memo_pipelines.storage.registry import ModelRegistry

STAGES = ["manifest.json", "snapshot.json", "reflections.jsonl", "probes.jsonl", "adapter_lineage.json", "candidate.json", "evaluation.json"]


@dataclass
class VersionStatus:
    version: str
    stages: list[str]
    state: str = "queued"
    documents: int | None = None
    deleted: int = 0
    quarantine: list[dict] = field(default_factory=list)
    superseded: list[dict] = field(default_factory=list)  # near-duplicates the snapshot replaced by a newer document
    model_id: str | None = None
    figures: dict = field(default_factory=dict)  # the report card's headline figures
    matrix: dict = field(default_factory=dict)  # R[update][probed version]: held-out recall
    failed_gates: list[str] = field(default_factory=list)
    failed_checks: list[str] = field(default_factory=list)  # blocking reflection checks that failed: its rows are never replayed
    run_status: str | None = None
    failure: dict | None = None  # the version's last failed run (steps, errors, how to retry), until a run succeeds in those steps
    doc_ids: list[str] = field(default_factory=list)
    pending: str | None = None  # why the promoted model has not learned this version's reflections (None: learned, or none to learn)
    carried_from: list[str] = field(default_factory=list)  # failed versions whose documents this version's manifest carries
    pending_cost: dict | None = None  # memory/pending_cost.py: what its update spent learning pending versions too, against a normal update


def version_outcome(store: ObjectStore, registry: ModelRegistry, version: str) -> tuple[str, list[str]] | None:
    """("promoted", []) once a model of the version is in the promoted stack; ("rejected", the failed gates' names) once
    its evaluation failed a gate; ("failed", each failed step with its error) while the version has a failure record;
    ("refused", the reason) once it passed its gates and its promotion step refused to move the pointer; None
    while none is known (still running, or passed and not yet promoted)."""
    evaluation = store.get_json(version_key(version, "evaluation.json"))
    if evaluation is not None and any(m.startswith(version + "-") for m in registry.pointer()["stack"]):
        return "promoted", []
    if failed := [g["name"] for g in (evaluation or {}).get("gates", []) if not g["passed"]]:
        return "rejected", failed
    if failure := store.get_json(failure_key(version)):
        return "failed", [f"{s['step']}: {(s['error'] or '(no error message)').splitlines()[0]}" for s in failure["steps"]] or [failure["message"]]
    if evaluation is None:
        return None
    promotion = store.get_json(promotion_key(version))
    return ("refused", [promotion["reason"]]) if promotion and not promotion["promoted"] else None


def snapshot_outline(store: ObjectStore, version: str, stages: list[str]) -> dict | None:
    """{documents: {doc_id: ...}, quarantine, superseded} of the version's snapshot: from its summary, a few bytes a
    document, where the version has one with the quarantine in it; from the snapshot itself (every text) otherwise."""
    if SNAPSHOT_SUMMARY in stages:
        found = store.get_json(version_key(version, SNAPSHOT_SUMMARY)) or {}
        if "quarantine" in found:
            return found
    if "snapshot.json" not in stages:
        return None
    snapshot = store.get_json(version_key(version, "snapshot.json"))
    return snapshot and {**snapshot, "documents": {d["doc_id"]: d.get("sha256") for d in snapshot["documents"]}}


def version_stages(store: ObjectStore, names: list[str] = STAGES) -> dict[str, list[str]]:
    return version_records(store, names)


def version_status(store: ObjectStore, version: str, stages: list[str], pointer: dict) -> VersionStatus:
    status = VersionStatus(version, [s for s in STAGES if s in stages])
    manifest = store.get_json(version_key(version, "manifest.json")) or {}
    status.deleted = len(manifest.get("deleted", []))
    status.doc_ids = [doc_id_for(o["key"], LANDING_PREFIX) for o in manifest.get("objects", [])]  # until a snapshot names the accepted ones
    status.carried_from = sorted({o["carried_from"] for o in manifest.get("objects", []) if "carried_from" in o})
    snapshot = snapshot_outline(store, version, stages)
    if snapshot:
        status.documents = len(snapshot["documents"])
        status.doc_ids = list(snapshot["documents"])
        status.quarantine = snapshot["quarantine"]
        status.superseded = snapshot.get("superseded", [])
    if REFLECTION_CHECKS in stages:
        status.failed_checks = (store.get_json(reflection_checks_key(version)) or {}).get("failed", [])
    if FAILURE in stages:
        status.failure = store.get_json(failure_key(version))
    if "adapter_lineage.json" in stages:
        status.pending_cost = (store.get_json(version_key(version, "adapter_lineage.json")) or {}).get("pending_cost")
    evaluation = store.get_json(version_key(version, "evaluation.json")) if "evaluation.json" in stages else None
    if evaluation:
        status.model_id = evaluation["candidate"]["model_id"]
        card = evaluation.get("card")
        if card:
            status.figures = {name: card.get(name) for name in ("heldout_recall", "acc", "bwt", "forgetting", "abstention", "hallucination", "train_row_recall")}
            status.figures |= {"general_accuracy": card["general"].get("accuracy"), "general_loglik_delta": card["general"].get("loglik_delta")}
            status.matrix = card.get("matrix", {})
            people = [s["closed_book"]["recall"] for s in (card.get("user_evals") or {}).values() if s.get("closed_book", {}).get("recall") is not None]
            status.figures["people_recall"] = sum(people) / len(people) if people else None
        else:  # written before held-out probes: only the training-row figures exist
            status.figures = {"train_row_recall": evaluation.get("report", {}).get("recall_new")}
        status.failed_gates = [g["name"] for g in evaluation["gates"] if not g["passed"]]
    ever_promoted = {entry["model_id"] for entry in pointer.get("history", [])}
    if status.model_id and status.model_id == pointer.get("model_id"):
        status.state = "promoted"
    elif status.model_id and status.model_id in ever_promoted:
        status.state = "superseded" if status.model_id in pointer.get("stack", []) else "rolled back"
    elif status.failed_gates:
        status.state = "rejected by its gates"
    elif evaluation:
        status.state = "passed, not promoted"
    elif status.failure:
        status.state = f"failed at {', '.join(s['step'] for s in status.failure['steps']) or 'the run level'}"
    elif status.failed_checks:
        status.state = f"reflections failed checks: {', '.join(status.failed_checks)}"
    elif len(status.stages) > 1:
        status.state = f"in progress ({status.stages[-1].split('.')[0]} done)"
    return status


def collect(store: ObjectStore, registry: ModelRegistry, dagster_home: str | None = None, progress=None) -> tuple[dict, list[VersionStatus]]:
    pointer = registry.pointer()
    stages = version_stages(store, STAGES + [REFLECTION_CHECKS, FAILURE, SNAPSHOT_SUMMARY])
    from memo_pipelines.orchestration.runs import run_statuses

    runs = run_statuses(dagster_home)
    versions = []
    for version in (progress or (lambda items: items))(sorted(stages)):
        status = version_status(store, version, stages[version], pointer)
        status.run_status = runs.get(version)
        versions.append(status)
    mark_pending(store, registry, pointer, versions, stages)
    return pointer, versions


def mark_pending(store: ObjectStore, registry: ModelRegistry, pointer: dict, versions: list[VersionStatus], stages: dict) -> None:
    """Set `pending` on every version with reflections the promoted model has not learned, saying why: its gates
    failed, it is not promoted yet, or its reflections failed their checks (those are never trained). The next
    update trains on the pending ones (memory/strategies.py), so their documents are not stranded."""
    learned = set(learned_versions(registry, pointer.get("model_id")))
    for v in versions:
        if v.failure and "reflections.jsonl" not in stages.get(v.version, []):
            carriers = [u.version for u in versions if v.version in u.carried_from]
            v.pending = f"{v.state}; its documents are carried into {carriers[-1]}" if carriers else f"{v.state}; the next version carries its documents"
            continue
        if "reflections.jsonl" not in stages.get(v.version, []) or v.version in learned:
            continue
        if v.failed_checks:
            v.pending = f"never trained: reflections failed checks {', '.join(v.failed_checks)}"
        elif v.failed_gates:
            v.pending = f"rejected by its gates ({', '.join(v.failed_gates)}); the next version's update trains on them"
        else:
            v.pending = f"{v.state}; not in the promoted model yet"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in [header] + rows) for i in range(len(header))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in [header] + rows]


def document_list(title: str, items: list[str], limit: int) -> list[str]:
    """A titled list of the last `limit` items, naming how many earlier ones `memo status --all` shows."""
    if not items:
        return []
    lines = [f"\n{title} ({len(items)}):"] + [f"  {item}" for item in items[-limit:]]
    if len(items) > limit:
        lines.append(f"  ... {len(items) - limit} earlier ones: memo status --all")
    return lines


def render(pointer: dict, versions: list[VersionStatus], quarantine_limit: int = 20) -> str:
    def figure(value):
        return "-" if value is None else f"{value:.2f}"

    lines = [f"promoted memory model: {pointer.get('model_id') or 'none'}"]
    if pointer.get("history"):
        last = pointer["history"][-1]
        at = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(last["at"])) if "at" in last else "?"
        lines.append(f"  since {at}: {last.get('reason', '')}")
    # "people's Qs": the evals/ sets people wrote; "reworded": generated probes, rewordings of the facts trained on
    header = ["version", "state", "run", "docs", "quarantined", "deleted", "people's Qs", "reworded", "ACC", "BWT", "forgetting", "abstain", "general Δ",
              "train rows"]
    names = ["people_recall", "heldout_recall", "acc", "bwt", "forgetting", "abstention", "general_loglik_delta", "train_row_recall"]
    rows = [[v.version, v.state + (f": {', '.join(v.failed_gates)}" if v.failed_gates else ""), v.run_status or "-",
             "-" if v.documents is None else str(v.documents), str(len(v.quarantine)), str(v.deleted),
             *(figure(v.figures.get(name)) for name in names)] for v in versions]
    lines.append("")
    lines += table(header, rows)
    promoted = next((v for v in versions if v.state == "promoted"), None)
    if promoted and promoted.matrix:
        columns = sorted({k for row in promoted.matrix.values() for k in row})
        lines.append(f"\nreworded-probe recall R[after update][of version], lineage of {promoted.model_id}:")
        lines += ["  " + line for line in table(["after", *columns], [[u, *(figure(row.get(k)) for k in columns)] for u, row in sorted(promoted.matrix.items())])]
    if not versions:
        lines.append("(no corpus versions yet: upload documents under the landing prefix)")
    quarantined = [(v.version, q) for v in versions for q in v.quarantine]
    lines += document_list("quarantined documents", [f"{version}  {q['doc_id']}: {q['reason']}" for version, q in quarantined], quarantine_limit)
    superseded = [(v.version, s) for v in versions for s in v.superseded]
    lines += document_list("superseded near-duplicates (the newer document was kept)",
                           [f"{version}  {s['doc_id']} by {s['superseded_by']} (similarity {s['similarity']}): {s['reason']}" for version, s in superseded],
                           quarantine_limit)
    lines += failure_lines([v for v in versions if v.failure])
    lines += document_list("updates that also learned pending versions (steps against the largest version's update alone)",
                           [f"{v.version}  learned {', '.join(c['pending_versions'])} too: {c['steps']} steps, {c['steps_vs_normal']}x a normal "
                            f"update's {c['normal_steps']} (bound {c['bound']}x{', capped' if c['capped'] else ''})"
                            for v in versions if (c := v.pending_cost)], quarantine_limit)
    lines += document_list("pending documents (not learned by the promoted model)",
                           [f"{v.version}  {doc}: {v.pending}" for v in versions if v.pending for doc in v.doc_ids], quarantine_limit)
    return "\n".join(lines)


def failure_lines(failed: list[VersionStatus]) -> list[str]:
    """Each failed version's steps and errors, and how to retry it."""
    lines = [f"\nfailed runs ({len(failed)}):"] if failed else []
    for v in failed:
        record = v.failure
        for step in record["steps"] or [{"step": "run", "error": record["message"]}]:
            error = step["error"].splitlines()[0] if step["error"] else "(no error message)"
            lines.append(f"  {v.version}  {step['step']}: {error}")
        lines.append(f"    run {record['run_id']} failed at {record['failed_at']}; retry from the {record['retry']['ui']}")
        lines.append(f"    or: {record['retry']['cli']}")
        lines += [f"    check {hint}" for hint in record["retry"].get("check", [])]
    return lines
