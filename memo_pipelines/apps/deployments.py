"""How a promoted memory becomes a `Deployment` that `memo serve` answers with, chosen by name.

    local   the model is fetched from the registry and loaded in this process (transformers), behind a ModelWorker
"""

from typing import Callable

from memo_pipelines.apps.batching import ModelWorker, Tally
from memo_pipelines.apps.follow import Deployment, promoted_move


def local_loader(registry, stats: Tally, window_s: float = 0.005) -> Callable[[dict], Deployment]:
    """Deployments of registry models loaded in-process; closing one drops the model."""
    from memo_pipelines.llm.backends import LocalChatModel
    from memo_pipelines.protocol import SourceIndex

    def load(pointer: dict) -> Deployment:
        model_id = pointer["model_id"]
        worker = ModelWorker(LocalChatModel(registry.fetch(model_id)), "memory", stats, window_s)
        promoted_at, reason = promoted_move(pointer)
        return Deployment(model_id, promoted_at, reason, worker, SourceIndex.from_registry(registry, model_id), close=worker.close,
                          memory_label=f"local:{model_id}")

    return load


LOADERS = {"local": local_loader}
