"""Training checkpoints mirrored to the object store, so a training step re-executed on another worker (another pod
under the k8s or celery executor, a fresh machine) resumes where the killed one stopped.

The training child writes accelerate's save_state folders (memory/training.py: step-NNNNNNN/, counters last) to a
local folder and reports each one; the launcher uploads it under versions/{v}/checkpoints/{job digest}/step-N/ and
then moves `latest.json` to it (the pointer is written last: a half-uploaded step is never resumed from). Before a
launch, the newest stored checkpoint is downloaded into a local folder that lacks it. A finished job removes both.
"""

import shutil
from pathlib import Path
from typing import Callable

from memo_pipelines.memory.training import COUNTERS, checkpoint_step_dir, latest_checkpoint
from memo_pipelines.storage.layout import training_checkpoint_prefix
from memo_pipelines.storage.objectstore import ObjectStore

Log = Callable[[str], None]


class CheckpointMirror:
    def __init__(self, store: ObjectStore, version: str, digest: str, local_dir: Path, log: Log):
        self.store, self.local_dir, self.log = store, Path(local_dir), log
        self.prefix = training_checkpoint_prefix(version, digest)

    @property
    def pointer_key(self) -> str:
        return f"{self.prefix}/latest.json"

    def stored_step(self) -> int | None:
        pointer = self.store.get_json(self.pointer_key)
        return pointer["step"] if pointer else None

    def restore(self) -> int | None:
        """Bring the newest stored checkpoint into the local folder when the folder has nothing as new; its step."""
        step = self.stored_step()
        if step is None:
            return None
        local = latest_checkpoint(self.local_dir)
        if local is not None and local.name >= checkpoint_step_dir(self.local_dir, step).name:
            return step
        target = checkpoint_step_dir(self.local_dir, step)
        self.store.download_dir(f"{self.prefix}/{target.name}", target)
        self.log(f"resuming training from the checkpoint of step {step} in the object store ({self.prefix})")
        return step

    def upload(self, step: int, folder: Path) -> None:
        """Copy one complete checkpoint folder to the store, move the pointer to it, drop the stored ones before it."""
        previous = self.stored_step()
        try:
            keys = self.store.upload_dir(folder, f"{self.prefix}/{folder.name}")
        except FileNotFoundError:  # the child already replaced it with a newer one, which will be reported next
            self.log(f"checkpoint of step {step} was replaced before it was copied; the next one will be")
            return
        if not any(key.endswith(f"/{COUNTERS}") for key in keys):
            return
        self.store.put_json(self.pointer_key, {"step": step, "folder": folder.name, "files": len(keys)})
        if previous is not None and previous != step:
            self.delete_step(previous)

    def delete_step(self, step: int) -> None:
        for obj in list(self.store.list_objects(f"{self.prefix}/{checkpoint_step_dir(Path('.'), step).name}/")):
            self.store.delete(obj.key)

    def progress(self, on_progress: Callable[[dict], None]) -> Callable[[dict], None]:
        """A progress callback that mirrors each reported checkpoint and passes every other event on."""
        def forward(figures: dict) -> None:
            if "checkpoint" in figures:
                self.upload(figures["checkpoint"]["step"], Path(figures["checkpoint"]["path"]))
            else:
                on_progress(figures)
        return forward

    def clear(self) -> None:
        """The job finished: its checkpoints, here and in the store, are no longer needed."""
        for obj in list(self.store.list_objects(f"{self.prefix}/")):
            self.store.delete(obj.key)
        shutil.rmtree(self.local_dir, ignore_errors=True)
