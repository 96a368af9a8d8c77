"""Stage 2: the version's reflections, their statistics and the config that produced them."""

from dataclasses import asdict

from memo_pipelines.llm.backends import ChatModel
from memo_pipelines.pipeline.workspace import Workspace, load_snapshot
from memo_pipelines.reflections.synthesis import SynthesisConfig, synthesise_reflections
from memo_pipelines.storage import layout
from memo_pipelines.storage.layout import version_key
from memo_pipelines.storage.objectstore import ObjectStore


class PrefixedCache:
    def __init__(self, store: ObjectStore, prefix: str):
        self.store, self.prefix = store, prefix

    def get_json(self, key: str, default=None):
        return self.store.get_json(self.prefix + key, default)

    def put_json(self, key: str, value) -> str:
        return self.store.put_json(self.prefix + key, value)


def generate_reflections(
    ws: Workspace, version: str, generator: ChatModel, strategy: str, progress=None, config: SynthesisConfig | None = None
) -> tuple[list[dict], dict]:
    """The version's reflections as JSONL (loadable with `datasets`), with their statistics and config beside them."""
    snapshot = load_snapshot(ws, version)
    config = config or SynthesisConfig()
    rows, stats = synthesise_reflections(
        snapshot.documents, version, generator, strategy, PrefixedCache(ws.store, layout.REFLECTION_CACHE_PREFIX), progress, config
    )
    ws.store.put_jsonl(version_key(version, "reflections.jsonl"), rows)
    figures = {**stats.to_json(), "strategy": strategy, "generator": generator.name, "config": asdict(config)}
    ws.store.put_json(version_key(version, "reflections_stats.json"), figures)
    return rows, figures
