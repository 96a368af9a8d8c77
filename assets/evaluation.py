import dagster as dg

from assets import md_table
from assets.memory import memory_model
from memo_pipelines.orchestration.partitions import corpus_versions
from memo_pipelines.pipeline import evaluate_memory_model
from resources import EvaluationResource, ModelRegistryResource

GATES = {
    "weights_finite": "Every weight of the candidate is finite.",
    "recall_new_version": "The candidate recalls at least min_recall of this version's facts.",
    "retention_earlier_versions": "No earlier version's recall drops by more than max_retention_drop against the promoted model.",
    "general_ability": "The candidate's answers to generic questions stay close to the base model's (token F1 >= min_general).",
}


@dg.asset(
    partitions_def=corpus_versions,
    deps=[memory_model],
    kinds={"python"},
    group_name="memo",
    description="Regression evaluation of the candidate against the promoted model; blocking checks are the promotion gates.",
    check_specs=[dg.AssetCheckSpec(name, asset="memory_eval", blocking=True, description=text) for name, text in GATES.items()],
)
def memory_eval(context: dg.AssetExecutionContext, registry: ModelRegistryResource, evaluation: EvaluationResource) -> dg.MaterializeResult:
    ws = registry.workspace()
    base_id, _ = registry.base()
    report, gates, candidate = evaluate_memory_model(ws, context.partition_key, base_id, evaluation.gates(), evaluation.sample_size)
    retention_gates = [g for g in gates if g["name"].startswith("retention_")]
    by_name = {g["name"]: g for g in gates}
    checks = [
        dg.AssetCheckResult(check_name=name, passed=bool(by_name[name]["passed"]), metadata={"value": float(by_name[name]["value"]), "threshold": float(by_name[name]["threshold"])})
        for name in ("weights_finite", "recall_new_version", "general_ability")
    ]
    checks.append(
        dg.AssetCheckResult(
            check_name="retention_earlier_versions",
            passed=all(g["passed"] for g in retention_gates),
            metadata={g["name"]: {"candidate": g["value"], "floor": g["threshold"]} for g in retention_gates} or {"earlier_versions": 0},
        )
    )
    return dg.MaterializeResult(
        metadata={
            "candidate_model": candidate["model_id"],
            "parent_model": candidate["parent"],
            "recall_new_version": report.recall_new,
            "general_ability": report.general,
            "gates_passed": all(g["passed"] for g in gates),
            "retention": dg.MetadataValue.md(
                md_table(["version", "candidate", "promoted"], [[v, f"{f['candidate']:.2f}", f"{f['promoted']:.2f}"] for v, f in sorted(report.retention.items())])
                if report.retention else "no earlier versions"
            ),
            "samples": dg.MetadataValue.md(
                md_table(["question", "expected", "answer", "recalled"], [[s["question"], s["expected"], s["answer"], "yes" if s["recalled"] else "no"] for s in report.samples[:10]])
            ),
        },
        check_results=checks,
    )
