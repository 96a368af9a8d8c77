"""One library call per pipeline stage, Dagster-free: each reads its inputs from the object store and writes its
outputs under `versions/{version}/`, so a stage can be re-run, backfilled or resumed on its own."""

from memo_pipelines.pipeline.corpus import snapshot_corpus
from memo_pipelines.pipeline.evaluation import ProtocolEvalConfig, evaluate_memory_model, write_heldout_probes
from memo_pipelines.pipeline.memory import general_reference, merge_memory_model, replay_sample, train_memory_adapter
from memo_pipelines.pipeline.promotion import promote_version
from memo_pipelines.pipeline.strategies import STRATEGIES, UpdateConfig
from memo_pipelines.pipeline.reflections import PrefixedCache, generate_reflections
from memo_pipelines.pipeline.workspace import (
    Workspace,
    document_changes,
    earlier_versions,
    live_earlier_reflections,
    live_records,
    load_reflections,
    load_snapshot,
    version_records,
)

__all__ = [
    "PrefixedCache", "ProtocolEvalConfig", "STRATEGIES", "UpdateConfig", "Workspace", "document_changes", "earlier_versions", "evaluate_memory_model", "general_reference",
    "generate_reflections", "live_earlier_reflections", "live_records", "load_reflections", "load_snapshot", "merge_memory_model",
    "promote_version", "replay_sample", "snapshot_corpus", "train_memory_adapter", "version_records", "write_heldout_probes",
]
