import dagster as dg

from assets import md_table
from assets.corpus import corpus_snapshot
from memo_pipelines.expectations import validate_reflections
from memo_pipelines.partitions import corpus_versions
from memo_pipelines.pipeline import generate_reflections, load_snapshot, version_key
from resources import GeneratorResource, ModelRegistryResource


CHECKS = {
    "fields_not_empty": "Every question and answer is non-empty.",
    "no_duplicates": "No two reflections share an id or a question-answer pair.",
    "valid_provenance": "Every reflection names source documents of its version.",
}


@dg.asset(
    partitions_def=corpus_versions,
    deps=[corpus_snapshot],
    kinds={"python"},
    group_name="memo",
    description="Question-answer reflections of the version's documents, with their source document ids (JSONL).",
    check_specs=[dg.AssetCheckSpec(name, asset="reflections", blocking=True, description=text) for name, text in CHECKS.items()],
)
def reflections(context: dg.AssetExecutionContext, registry: ModelRegistryResource, generator: GeneratorResource) -> dg.MaterializeResult:
    ws = registry.workspace()
    _, base_dir = registry.base()
    strategy = generator.resolved_strategy()

    def progress(done: int, total: int) -> None:
        context.log.info(f"reflections: {done}/{total} documents")

    rows, stats = generate_reflections(ws, context.partition_key, generator.chat_model(base_dir), strategy, progress)
    outcomes = validate_reflections(rows, [d.doc_id for d in load_snapshot(ws, context.partition_key).documents])
    return dg.MaterializeResult(
        metadata={
            "reflections": len(rows),
            "strategy": strategy,
            "generator_calls": stats["generator_calls"],
            "cache_hits": stats["cache_hits"],
            "kept_by_method": stats["kept_by_method"],
            "dropped_by_reason": stats["dropped_by_reason"],
            "sample": dg.MetadataValue.md(md_table(["question", "answer", "sources"], [[r["question"], r["answer"], ", ".join(r["source_doc_ids"])] for r in rows[:10]])),
            "uri": dg.MetadataValue.path(f"s3://{ws.store.bucket}/{version_key(context.partition_key, 'reflections.jsonl')}"),
        },
        check_results=[dg.AssetCheckResult(check_name=n, passed=o["passed"], metadata=o["metadata"]) for n, o in outcomes.items()],
    )
