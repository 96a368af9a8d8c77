import dagster as dg

from assets import blocking_checks, md_table
from assets.memory import memory_model
from assets.partitions import VERSION_ASSET
from assets.reflections import heldout_probes
from memo_pipelines.evaluation.candidate import evaluate_memory_model
from resources import EvaluationResource, ModelRegistryResource

GATES = {
    "weights_finite": "Every weight of the candidate is finite (and there are weights to check).",
    "reworded_recall_new_version": "The candidate answers at least min_heldout_recall of this version's reworded probes (its facts asked in a form never trained on: "
                                  "rewordings, not people's questions; the evals/ sets people wrote are shown beside them).",
    "retention_earlier_versions": "No earlier version's reworded-probe recall is more than max_forgetting below its best value ever.",
    "abstention": "The candidate says \"I don't know\" to at least min_abstention of the probes about entities the corpus never names.",
    "general_ability": "The gold answers of public general questions lose at most max_general_drop nats per token against the base model.",
    "deleted_documents_forgotten": "At most max_deleted_answer_rate of the questions (reflections and reworded probes) of documents deleted since "
                                   "the parent model's version still get their deleted answer: a takedown reaches the served memory.",
}


def matrix_table(matrix: dict) -> str:
    columns = sorted({k for row in matrix.values() for k in row})
    return md_table(["after update", *columns], [[u, *(f"{row[k]:.2f}" if row.get(k) is not None else "" for k in columns)] for u, row in sorted(matrix.items())])


def figure(value) -> float:
    return float(value) if value is not None else float("nan")


@dg.asset(**VERSION_ASSET, deps=[memory_model, heldout_probes], kinds={"python"},
          description="The candidate's report card on reworded probes and people's evals/ sets (R matrix, ACC, BWT, forgetting, abstention, general ability); "
                      "blocking checks are the promotion gates. Numeric metadata plot over versions in the asset's Plots tab.",
          check_specs=blocking_checks("memory_eval", GATES))
def memory_eval(context: dg.AssetExecutionContext, registry: ModelRegistryResource, evaluation: EvaluationResource) -> dg.MaterializeResult:
    base_id, _ = registry.base()  # registered on first use, before the candidate is compared with it
    ws = registry.workspace()
    card, gates, candidate = evaluate_memory_model(ws, context.partition_key, base_id, evaluation.gates(), evaluation.protocol_config())
    by_name = {g["name"]: g for g in gates}
    retention = [g for g in gates if g["name"].startswith("retention_")]

    def check(name: str, passed: bool, metadata: dict) -> dg.AssetCheckResult:
        return dg.AssetCheckResult(check_name=name, passed=bool(passed), metadata=metadata)

    checks = [check(name, by_name[name]["passed"], {"value": str(by_name[name]["value"]), "threshold": str(by_name[name]["threshold"]),
                                                    "reason": by_name[name]["reason"]})
              for name in ("weights_finite", "reworded_recall_new_version", "abstention", "general_ability")]
    forgotten = by_name.get("deleted_documents_forgotten")
    checks.append(check("deleted_documents_forgotten", forgotten["passed"], {k: str(forgotten[k]) for k in ("value", "threshold", "reason")})
                  if forgotten else check("deleted_documents_forgotten", True, {"reason": "no document the parent model learned was deleted since"}))
    checks.append(check("retention_earlier_versions", all(g["passed"] for g in retention),
                        {g["name"]: f"{g['value']} (floor {g['threshold']}; {g['reason']})" for g in retention} or {"earlier_versions": "none measured before"}))
    general = card.general
    return dg.MaterializeResult(
        metadata={
            "candidate_model": candidate["model_id"],
            "parent_model": candidate["parent"],
            "heldout_recall": figure(card.heldout_recall),
            "acc": figure(card.acc),
            "bwt": figure(card.bwt),
            "forgetting": figure(card.forgetting),
            "abstention": figure(card.abstention),
            "hallucination": figure(card.hallucination),
            "general_accuracy": figure(general["accuracy"]),
            "general_loglik_delta": figure(general["loglik_delta"]),
            "train_row_recall": figure(card.train_row_recall),
            "gates_passed": all(g["passed"] for g in gates),
            "report_card": dg.MetadataValue.md(matrix_table(card.matrix)),
            "gates": dg.MetadataValue.md(md_table(["gate", "value", "threshold", "passed", "reason"],
                                                  [[g["name"], g["value"], g["threshold"], "yes" if g["passed"] else "no", g["reason"]] for g in gates])),
            "user_evals": dg.MetadataValue.md(md_table(["set", "closed book recall", "protocol recall"],
                                                       [[name, (s.get("closed_book") or {}).get("recall", s.get("skipped")), (s.get("protocol") or {}).get("recall", (s.get("protocol") or {}).get("skipped"))]
                                                        for name, s in sorted(card.user_evals.items())]) if card.user_evals else "no sets under evals/"),
            "samples": dg.MetadataValue.md(md_table(["question", "expected", "answer", "outcome"], [[s["question"], s["expected"], s["answer"], s["outcome"]] for s in card.samples[:12]])),
        },
        check_results=checks,
    )
