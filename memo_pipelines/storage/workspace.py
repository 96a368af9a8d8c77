"""Where a run keeps its state: the bucket, the registry over it, and a local scratch folder."""

import shutil
from dataclasses import dataclass
from pathlib import Path

from memo_pipelines.storage import layout
from memo_pipelines.storage.objectstore import ObjectStore
from memo_pipelines.storage.registry import ModelRegistry


@dataclass
class Workspace:
    store: ObjectStore
    registry: ModelRegistry
    work_dir: Path
    landing_prefix: str = layout.LANDING_PREFIX

    def scratch(self, version: str, stage: str) -> Path:
        path = self.work_dir / "runs" / version / stage
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        return path
