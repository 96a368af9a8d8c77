"""Forgetting deleted documents without retraining everything: the `continue` strategy's forget update, and the check
that the served memory no longer gives their facts.

A model that learned a document holds its facts in its weights. A compaction (a full retrain from the base on every
live reflection) takes them out at a cost that grows with the corpus. A forget update trains on top of the promoted
model instead: "I don't know" to every question the deleted documents' reflections and reworded probes asked, the
usual per-version replay (half of it the live rows whose questions are nearest the forgotten ones, the facts a
decline is likeliest to spill onto), generic pairs, and whatever new rows the version brings. The update then asks
the folded model every forgotten question; one whose deleted answer is still given sends the update to a compaction,
so the bound on what is served holds whichever way the update goes.

What counts as a deleted document's question: storage/deletions.py; the check: evaluation/forgetting.py.
"""

import shutil
from pathlib import Path

from memo_pipelines.evaluation.forgetting import check_forgotten
from memo_pipelines.storage.workspace import Workspace


def check_forget_adapter(ws: Workspace, start_model: str, adapter_key: str, targets: list[dict], scratch: Path) -> dict:
    """check_forgotten on the forget adapter folded into the model it was trained on top of (what memory_model builds)."""
    from memo_pipelines.llm.backends import LocalChatModel
    from memo_pipelines.memory.merging import as_model

    adapter_dir = ws.store.download_dir(adapter_key, scratch / "adapter")
    try:
        return check_forgotten(LocalChatModel(as_model(ws.registry.fetch(start_model), adapter_dir, scratch / "model")), targets)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
