"""Stage 2: the version's reflections, their statistics, the config that produced them and the outcome of their
blocking checks (reflections that failed one are never replayed, used as retention targets or probed)."""

from dataclasses import asdict

from memo_pipelines.corpus.reading import load_snapshot
from memo_pipelines.llm.backends import ChatModel
from memo_pipelines.reflections.expectations import MIN_VERIFIED_SHARE, validate_reflections
from memo_pipelines.reflections.document import sentence_coverage
from memo_pipelines.reflections.synthesis import SynthesisConfig, synthesise_reflections
from memo_pipelines.storage import layout
from memo_pipelines.storage.history import rows_digest
from memo_pipelines.storage.layout import version_key
from memo_pipelines.storage.objectstore import ObjectStore
from memo_pipelines.storage.workspace import Workspace


class PrefixedCache:
    def __init__(self, store: ObjectStore, prefix: str):
        self.store, self.prefix = store, prefix

    def get_json(self, key: str, default=None):
        return self.store.get_json(self.prefix + key, default)

    def put_json(self, key: str, value) -> str:
        return self.store.put_json(self.prefix + key, value)


def generate_reflections(
    ws: Workspace, version: str, generator: ChatModel, strategy: str, progress=None, config: SynthesisConfig | None = None,
    min_verified_share: float = MIN_VERIFIED_SHARE,
) -> tuple[list[dict], dict]:
    """The version's reflections as JSONL (loadable with `datasets`), with their statistics and config beside them, and
    the blocking checks' outcomes (figures["checks"]: {name: {passed, metadata}}) recorded in the bucket."""
    snapshot = load_snapshot(ws.store, version)
    config = config or SynthesisConfig()
    rows, stats = synthesise_reflections(
        snapshot.documents, version, generator, strategy, PrefixedCache(ws.store, layout.REFLECTION_CACHE_PREFIX), progress, config
    )
    figures = {**stats.to_json(), "strategy": strategy, "generator": generator.name, "config": asdict(config),
               "coverage_of_sentences": sentence_coverage(snapshot.documents, rows)}
    figures["checks"] = validate_reflections(rows, [d.doc_id for d in snapshot.documents], figures["verification"], min_verified_share,
                                             min_rows=0 if snapshot.nothing_to_learn else 1)
    # the outcome goes first, naming the rows it judged: rows written without their outcome (a crash between the two
    # writes) never match a record, so they are never replayed as if they had passed
    failed = sorted(name for name, outcome in figures["checks"].items() if not outcome["passed"])
    ws.store.put_json(layout.reflection_checks_key(version), {"version": version, "passed": not failed, "failed": failed, "rows": len(rows),
                                                              "reflections_sha256": rows_digest(rows), "checks": figures["checks"]})
    ws.store.put_jsonl(version_key(version, "reflections.jsonl"), rows)
    ws.store.put_json(version_key(version, "reflections_stats.json"), figures)
    return rows, figures
