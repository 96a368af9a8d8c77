import dagster as dg

from assets import blocking_checks, md_table
from assets.corpus import corpus_snapshot
from assets.partitions import VERSION_ASSET
from assets.retries import FLAKY_STEP_RETRY
from memo_pipelines.reflections.dataset import generate_reflections
from memo_pipelines.reflections.probes import write_heldout_probes
from memo_pipelines.storage.layout import version_key
from resources import GeneratorResource, ModelRegistryResource


CHECKS = {
    "fields_not_empty": "Every question and answer is non-empty.",
    "no_duplicates": "No two reflections share an id or a question-answer pair.",
    "valid_provenance": "Every reflection names source documents of its version and one of the known steps.",
    "verified_share": "The share of checked pairs that passed verification (self-contained, grounded) is at least the threshold.",
}


@dg.asset(**VERSION_ASSET, deps=[corpus_snapshot], kinds={"python"}, retry_policy=FLAKY_STEP_RETRY,
          description="Question-answer reflections of the version's documents (the five-step synthesis, unanswerable probes), "
                      "with their source document ids and step (JSONL).",
          check_specs=blocking_checks("reflections", CHECKS))
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
            "coverage_of_sentences": stats["coverage_of_sentences"]["share"],  # of the documents' sentences, those some row teaches
            "least_covered": dg.MetadataValue.md(md_table(["document", "sentences taught"], sorted(
                ([d, c] for d, c in stats["coverage_of_sentences"]["per_document"].items() if c is not None), key=lambda x: x[1])[:5])),
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


@dg.asset(**VERSION_ASSET, deps=[reflections], kinds={"python"}, retry_policy=FLAKY_STEP_RETRY,
          description="Held-out probes of the version: questions about its facts phrased unlike any training question, and questions "
                      "about entities the corpus never names; written by the generator form of the reflections, never trained on.")
def heldout_probes(context: dg.AssetExecutionContext, registry: ModelRegistryResource, generator: GeneratorResource) -> dg.MaterializeResult:
    ws = registry.workspace()
    _, base_dir = registry.base()
    probes, report = write_heldout_probes(ws, context.partition_key, generator.chat_model(base_dir), generator.resolved_strategy(), generator.probe_config())
    contamination = report["contamination"]
    return dg.MaterializeResult(metadata={
        "probes": report["probes"],
        "fact_probes": report["facts"],
        "unanswerable_probes": report["unanswerable"],
        "by_form": report["by_form"],
        "contamination_dropped": contamination["dropped"],
        "max_training_overlap": dg.MetadataValue.float(float(contamination["max_overlap"] or 0.0)),
        "overlap_threshold": contamination["threshold"],
        "sample": dg.MetadataValue.md(md_table(["kind", "question", "key answer", "overlap"], [[p["kind"], p["question"], p["key_answer"], p["training_overlap"]] for p in probes[:12]])),
        "uri": dg.MetadataValue.path(f"s3://{ws.store.bucket}/{version_key(context.partition_key, 'probes.jsonl')}"),
    })
