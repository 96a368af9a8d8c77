"""Building a memory model from adapters: fold one adapter into the model it was trained on (peft merge_and_unload),
or combine several per-version deltas trained from one anchor with mergekit (TIES, DARE, task arithmetic, linear), so
the merge is a recorded, reproducible artifact (memo_merge.json beside the weights).

A mergekit merge of a single fine-tuned model into its own parent only prunes its delta (TIES keeps the larger half):
it can lose knowledge and cannot add any, so one model is folded, and mergekit is used across several deltas.
"""

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

METHODS = ("task_arithmetic", "ties", "dare_ties", "linear")


@dataclass(frozen=True)
class MergeConfig:
    method: str = "ties"
    weight: float = 1.0
    density: float = 0.5
    seed: int = 0

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"unknown merge method {self.method!r}; choose one of {METHODS}")
        if not 0 < self.density <= 1 or not 0 < self.weight <= 2:
            raise ValueError("density must be in (0, 1] and weight in (0, 2]")


def fold_adapter(promoted_dir: Path, adapter_dir: Path, out_dir: Path) -> Path:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(promoted_dir), dtype=torch.float32)
    model = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    model.save_pretrained(str(out_dir))
    AutoTokenizer.from_pretrained(str(promoted_dir)).save_pretrained(str(out_dir))
    return out_dir


def as_model(anchor_dir: Path, adapter_dir: Path, out_dir: Path) -> Path:
    """A whole model from a training output: a LoRA adapter folded into anchor_dir, or a fully trained model copied."""
    if (Path(adapter_dir) / "adapter_config.json").exists():
        return fold_adapter(anchor_dir, adapter_dir, out_dir)
    shutil.copytree(adapter_dir, out_dir)
    return Path(out_dir)


def deltas_mergekit_config(config: MergeConfig, anchor_dir: Path, finetuned_dirs: list[Path]) -> dict:
    """Every fine-tuned model's delta from the anchor combined with the configured method, weight and density."""
    parameters = {"weight": config.weight}
    if config.method in ("ties", "dare_ties"):
        parameters["density"] = config.density
    if config.method == "linear":  # a weighted average of the models themselves
        return {"merge_method": "linear", "models": [{"model": str(d), "parameters": {"weight": config.weight}} for d in finetuned_dirs],
                "dtype": "float32"}
    return {
        "merge_method": config.method,
        "base_model": str(anchor_dir),
        "models": [{"model": str(d), "parameters": dict(parameters)} for d in finetuned_dirs],
        "parameters": {"normalize": False} if config.method != "task_arithmetic" else {},
        "dtype": "float32",
    }


def merge_deltas(anchor_dir: Path, adapter_dirs: list[Path], out_dir: Path, config: MergeConfig, scratch_dir: Path) -> dict:
    """The memory model holding every adapter's delta (each trained from anchor_dir): one adapter is folded in, several
    are folded one by one and combined with mergekit. Returns what was done: {"combine", "mergekit"}."""
    out_dir = Path(out_dir)
    shutil.rmtree(out_dir, ignore_errors=True)
    if len(adapter_dirs) == 1:
        as_model(anchor_dir, adapter_dirs[0], out_dir)
        record = {"combine": "fold", "mergekit": None}
    else:
        from mergekit.config import MergeConfiguration
        from mergekit.merge import MergeOptions, run_merge

        finetuned = [as_model(anchor_dir, a, Path(scratch_dir) / f"finetuned-{i}") for i, a in enumerate(adapter_dirs)]
        merge = deltas_mergekit_config(config, anchor_dir, finetuned)
        run_merge(MergeConfiguration.model_validate(merge), str(out_dir),
                  MergeOptions(copy_tokenizer=True, random_seed=config.seed, write_model_card=False, quiet=True))
        for path in finetuned:
            shutil.rmtree(path, ignore_errors=True)
        record = {"combine": "mergekit", "mergekit": merge}
    (out_dir / "memo_merge.json").write_text(json.dumps({"config": asdict(config), **record}, indent=1))
    return record
