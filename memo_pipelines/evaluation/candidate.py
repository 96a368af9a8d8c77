"""Stage 5: the candidate's report card over every live version's held-out probes, with the gate results, stored as
`versions/{v}/evaluation.json`."""

import hashlib
from dataclasses import asdict, dataclass

from memo_pipelines.corpus.reading import snapshot_summary
from memo_pipelines.evaluation.card import Gates, ReportCard, build_card
from memo_pipelines.evaluation.general import general_figures, general_questions
from memo_pipelines.evaluation.undecided import carried_versions, pooled_gate
from memo_pipelines.evaluation.metrics import sample_facts
from memo_pipelines.evaluation.user_evals import load_user_evals, score_user_evals
from memo_pipelines.llm.backends import LLMSpec, LocalChatModel, load_chat_model
from memo_pipelines.evaluation.forgetting import check_forgotten
from memo_pipelines.storage import layout
from memo_pipelines.storage.deletions import forgotten_questions
from memo_pipelines.storage.history import live_records, load_reflections
from memo_pipelines.storage.layout import version_key
from memo_pipelines.storage.workspace import Workspace


@dataclass(frozen=True)
class ProtocolEvalConfig:
    """How users' own evaluation sets are asked through the protocol: the executive (an empty local model means the
    base model) and the protocol mode; backend "none" scores them closed book only."""

    # local | openai | none (closed book only). None by default: the embedded 135M executive plans poorly (memo ask does
    # not use it either) and costs about 35 times the closed-book pass on CPU (benchmarks/evaluation_time.py)
    executive_backend: str = "none"
    executive_model: str = ""  # a local model directory (empty: the base model) or the endpoint's model name
    executive_base_url: str = ""  # the OpenAI-compatible endpoint of an openai executive
    protocol_mode: str = "single"  # how the executive queries the memory (protocol/stages.py MODES)
    user_eval_limit: int = 100  # questions per evaluation set


def base_general(ws: Workspace, base_id: str, size: int) -> dict:
    """The base model's general figures, measured once and kept in the registry."""
    key = layout.general_baseline_key(base_id, size)
    figures = ws.store.get_json(key)
    if figures is None:
        figures = general_figures(LocalChatModel(ws.registry.fetch(base_id)), general_questions(size))
        ws.store.put_json(key, figures)
    return figures


def lineage_matrix(ws: Workspace, parent_id: str) -> dict:
    """The R matrix of the models this candidate was trained on top of: its parent's card (the base has none)."""
    parent_version = ws.registry.model_version(parent_id)
    if parent_version is None:
        return {}
    evaluation = ws.store.get_json(version_key(parent_version, "evaluation.json")) or {}
    return (evaluation.get("card") or {}).get("matrix", {})


def protocol_factory(ws: Workspace, base_id: str, config: ProtocolEvalConfig):
    if config.executive_backend == "none":
        return None
    from memo_pipelines.protocol import Protocol, ProtocolConfig

    spec = LLMSpec.from_values({}, backend=config.executive_backend, model=config.executive_model, base_url=config.executive_base_url)
    executive = load_chat_model(spec, default_local_dir=ws.registry.fetch(base_id))
    return lambda memory: Protocol(executive, memory, ProtocolConfig(mode=config.protocol_mode))


def earlier_limit(gates: Gates, earlier_versions: int) -> int:
    """Probes of each kind asked of each earlier version: earlier_probes, or an equal share of earlier_probes_total
    once the versions are many (4 at least); 0: every probe."""
    if not gates.earlier_probes:
        return 0
    if not gates.earlier_probes_total or not earlier_versions:
        return gates.earlier_probes
    return min(gates.earlier_probes, max(MIN_EARLIER_PROBES, gates.earlier_probes_total // earlier_versions))


MIN_EARLIER_PROBES = 4


def fixed_sample(probes: list[dict], limit: int) -> list[dict]:
    """At most `limit` probes of each kind, the first by a hash of their id: the same probes whichever evaluation asks
    (a retired probe leaves the others in place)."""
    if not limit:
        return probes
    ordered = sorted(probes, key=lambda p: hashlib.sha1(p["id"].encode()).hexdigest())
    kinds = {p["kind"] for p in probes}
    return [p for kind in sorted(kinds) for p in [q for q in ordered if q["kind"] == kind][:limit]]


def evaluate_memory_model(ws: Workspace, version: str, base_id: str, gates: Gates,
                          protocol: ProtocolEvalConfig | None = None) -> tuple[ReportCard, list[dict], dict]:
    """The candidate's report card over every live version's probes, the gate results, and the candidate record."""
    candidate_info = ws.store.get_json(version_key(version, "candidate.json"))
    candidate = LocalChatModel(ws.registry.fetch(candidate_info["model_id"]))
    live_probes, retired = live_records(ws.store, version, "probes.jsonl", include_self=True, landing_prefix=ws.landing_prefix)
    limit = earlier_limit(gates, len(live_probes) - (version in live_probes))
    live_probes = {k: probes if k == version else fixed_sample(probes, limit) for k, probes in live_probes.items()}
    protocol = protocol or ProtocolEvalConfig()
    user_sets, problems = load_user_evals(ws.store, protocol.user_eval_limit)
    user = score_user_evals(user_sets, candidate, protocol_factory(ws, base_id, protocol) if user_sets else None)
    user.update({name: {"skipped": why} for name, why in problems.items()})
    card = build_card(candidate, version, live_probes, lineage_matrix(ws, candidate_info["parent"]),
                      sample_facts(load_reflections(ws.store, version), gates.sample_size),
                      general_figures(candidate, general_questions(gates.general_size)), base_general(ws, base_id, gates.general_size), user)
    brief = snapshot_summary(ws.store, version)  # benchmarks write rows without a snapshot
    card.nothing_to_learn = bool(brief) and brief["nothing_to_learn"]
    parent_version = ws.registry.model_version(candidate_info["parent"])
    card.forgotten = check_forgotten(candidate, forgotten_questions(ws.store, parent_version, version, ws.landing_prefix))
    results = card.gate_results(gates)
    pending = (ws.store.get_json(version_key(version, "adapter_lineage.json")) or {}).get("pending_versions_learned", [])
    results, new_version_gate = pooled_gate(card, gates, carried_versions(ws.store, [v for v in [parent_version, *pending] if v]), results)
    ws.store.put_json(version_key(version, "evaluation.json"),
                      {"candidate": candidate_info, "card": card.to_json(), "gates": results, "new_version_gate": new_version_gate, "retired_probes": retired, "thresholds": asdict(gates)})
    return card, results, candidate_info
