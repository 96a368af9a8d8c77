import dagster as dg

from assets import md_table
from assets.corpus import corpus_snapshot
from memo_pipelines.orchestration.partitions import corpus_versions
from memo_pipelines.orchestration.retries import FLAKY_STEP_RETRY
from memo_pipelines.pipeline import generate_reflections
from memo_pipelines.storage.layout import version_key
from resources import GeneratorResource, ModelRegistryResource


CHECKS = {
    "fields_not_empty": "Every question and answer is non-empty.",
    "no_duplicates": "No two reflections share an id or a question-answer pair.",
    "valid_provenance": "Every reflection names source documents of its version and one of the known steps.",
    "verified_share": "The share of checked pairs that passed verification (self-contained, grounded) is at least the threshold.",
}


@dg.asset(
    partitions_def=corpus_versions,
    deps=[corpus_snapshot],
    kinds={"python"},
    retry_policy=FLAKY_STEP_RETRY,
    group_name="memo",
    description="Question-answer reflections of the version's documents (the five-step synthesis, unanswerable probes), "
    "with their source document ids and step (JSONL).",
    check_specs=[dg.AssetCheckSpec(name, asset="reflections", blocking=True, description=text) for name, text in CHECKS.items()],
)
def reflections(context: dg.AssetExecutionContext, registry: ModelRegistryResource, generator: GeneratorResource) -> dg.MaterializeResult:
    ws = registry.workspace()
    _, base_dir = registry.base()
    strategy = generator.resolved_strategy()

    def progress(done: int, total: int) -> None:
        context.log.info(f"reflections: {done}/{total} documents")

    rows, stats = generate_reflections(ws, context.partition_key, generator.chat_model(base_dir), strategy, progress, generator.synthesis_config(),
                                       generator.min_verified_share)
    sample = [r for step in dict.fromkeys(r["step"] for r in rows) for r in [x for x in rows if x["step"] == step][:2]]
    return dg.MaterializeResult(
        metadata={
            "reflections": len(rows),
            "strategy": strategy,
            "generator": stats["generator"],
            "generator_calls": stats["generator_calls"],
            "tokens": sum(stats["tokens"].get(k, 0) for k in ("prompt_tokens", "completion_tokens")),
            "cache_hits": stats["cache_hits"],
            "cache_misses": stats["cache_misses"],
            "verified_share": stats["verification"]["share_passed"],
            "cross_document_groups": stats["cross_document_groups"],
            "suspected_injection": stats["suspected_injection"],
            "by_step": dg.MetadataValue.md(md_table(["step", "reflections"], sorted(stats["kept_by_step"].items()))),
            "kept_by_method": stats["kept_by_method"],
            "dropped_by_reason": dg.MetadataValue.md(md_table(["reason", "dropped"], sorted(stats["dropped_by_reason"].items(), key=lambda x: -x[1]))),
            "sample": dg.MetadataValue.md(md_table(["step", "question", "answer", "sources"], [[r["step"], r["question"], r["answer"], ", ".join(r["source_doc_ids"])] for r in sample])),
            "uri": dg.MetadataValue.path(f"s3://{ws.store.bucket}/{version_key(context.partition_key, 'reflections.jsonl')}"),
        },
        check_results=[dg.AssetCheckResult(check_name=n, passed=o["passed"], metadata=o["metadata"]) for n, o in stats["checks"].items()],
    )
