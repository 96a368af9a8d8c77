from collections import Counter

import dagster as dg

from assets import md_table
from assets.partitions import VERSION_ASSET
from assets.retries import FLAKY_STEP_RETRY
from memo_pipelines.corpus.reading import snapshot_corpus
from memo_pipelines.protocol.passages import PASSAGES_FILE, write_version_passages
from memo_pipelines.storage.layout import version_key
from resources import ModelRegistryResource


class SnapshotConfig(dg.Config):
    max_document_bytes: int = 2_000_000  # larger objects are quarantined from their manifest size, never downloaded


@dg.asset(**VERSION_ASSET, kinds={"s3"}, retry_policy=FLAKY_STEP_RETRY, description="Manifest, normalised text, quarantine list and superseded near-duplicates of one corpus version.")
def corpus_snapshot(context: dg.AssetExecutionContext, config: SnapshotConfig, registry: ModelRegistryResource) -> dg.MaterializeResult:
    ws = registry.workspace()
    snapshot = snapshot_corpus(ws, context.partition_key, config.max_document_bytes)
    for item in snapshot.quarantine:
        context.log.warning(f"quarantined {item['doc_id']}: {item['reason']}")
    for item in snapshot.superseded:
        context.log.warning(f"superseded {item['doc_id']}: {item['reason']}")
    return dg.MaterializeResult(
        metadata={
            "documents": len(snapshot.documents),
            "quarantined": len(snapshot.quarantine),
            "duplicates": len(snapshot.duplicates),
            "superseded": dg.MetadataValue.md(
                md_table(["document", "superseded by", "similarity", "reason"], [[s["doc_id"], s["superseded_by"], s["similarity"], s["reason"]] for s in snapshot.superseded])
                if snapshot.superseded else "no near-duplicates"
            ),
            "characters": sum(len(d.text) for d in snapshot.documents),
            "formats": dict(sorted(Counter(d.format for d in snapshot.documents).items())),
            "deleted": dg.MetadataValue.md(md_table(["deleted document"], [[d] for d in snapshot.deleted]) if snapshot.deleted else "nothing deleted"),
            "quarantine": dg.MetadataValue.md(
                md_table(["document", "reason"], [[q["doc_id"], q["reason"]] for q in snapshot.quarantine]) if snapshot.quarantine else "nothing quarantined"
            ),
            "uri": dg.MetadataValue.path(f"s3://{ws.store.bucket}/{version_key(context.partition_key, 'snapshot.json')}"),
        }
    )


@dg.asset(**VERSION_ASSET, deps=[corpus_snapshot], kinds={"s3"}, retry_policy=FLAKY_STEP_RETRY,
          description="This version's documents cut into passages with their character spans: what the hybrid route retrieves "
                      "and quotes (memo ask --hybrid). Only the version's own documents, so its cost follows the new data.")
def passages(context: dg.AssetExecutionContext, registry: ModelRegistryResource) -> dg.MaterializeResult:
    store = registry.workspace().store
    figures = write_version_passages(store, context.partition_key)
    return dg.MaterializeResult(metadata={**figures, "uri": dg.MetadataValue.path(f"s3://{store.bucket}/{version_key(context.partition_key, PASSAGES_FILE)}")})
