"""Memory training: a LoRA adapter (peft) on reflections plus replay, loss on the answer tokens only.

Runs out of the orchestrator's process: `python -m memo_pipelines.memory.training SPEC.json` prints one
`MEMO_PROGRESS {json}` line per logged step, so any launcher (subprocess here, accelerate on a GPU host)
can stream progress back.
"""

import json
import math
import os
import random
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from memo_pipelines.qa import memory_messages, memory_training_messages
from memo_pipelines.processes import stop_process_group

PROGRESS_PREFIX = "MEMO_PROGRESS "
ERROR_PREFIX = "MEMO_ERROR "  # a refusal the child explains in one line, raised as TrainingRefused by the launcher


METHODS = ("lora", "full")
LR_SCHEDULES = ("linear", "cosine", "constant")


@dataclass(frozen=True)
class TrainConfig:
    method: str = "lora"  # "lora": a peft adapter; "full": every weight trains and a whole model is saved
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    target_modules: str = "all-linear"
    learning_rate: float = 3e-4
    # "linear" or "cosine": the rate warms up over warmup_share of the planned steps, then decays to 0 at the last
    # (transformers' schedules), for budgets of many passes. Flat by default: on the demo's three-document update, at
    # the local budget of 128 steps (2 passes), a linear decay recalled 1 of 16 training facts at every check where the
    # flat rate reached 5 (benchmarks/RESULTS.md, "Update stability")
    lr_schedule: str = "constant"
    warmup_share: float = 0.1
    epochs: int = 8  # the most passes over the examples; early stopping (stop_every) usually ends training sooner
    max_steps: int = 0  # > 0: a cap on optimizer steps whatever the data size (a time budget)
    batch_size: int = 8
    max_length: int = 512  # cap on tokens per example; the length trained at is the longest example's, up to this cap
    max_truncated_share: float = 0.05  # more examples than this share cut or dropped at the cap fails the training
    seed: int = 0
    log_every: int = 5
    checkpoint_every: int = 25  # steps; a killed run resumes from the last checkpoint
    pack_length: int = 0  # > 0: pack each step's examples into rows of at most this many tokens instead of padding
    # each step's examples drawn from a shuffled window of 50 batches sorted by length (transformers' length-grouped
    # order): a sentence-long answer is no longer padded beside short ones, about a quarter fewer tokens computed. Off by
    # default: on a few rows every epoch then repeats the same batches, and tests/test_protocol.py's tiny memory failed to learn
    group_by_length: bool = False
    # early stopping on the recall of a sample of the version's own training facts (never the gates' held-out probes):
    # every stop_every steps the adapter answers them greedily; training stops at stop_recall, or when recall has not
    # risen for stop_patience checks in a row. Needs stop rows from the caller; 0 turns it off.
    stop_every: int = 16
    stop_recall: float = 0.9
    stop_patience: int = 3
    min_epochs: int = 2  # no early stop before this many passes over the examples
    # the adapter kept is the checked state with the best recall among those that still decline at least this share of
    # the stop rows whose key answer is "I don't know" (questions about invented names, never trained on): recall rises
    # with training while the memory starts answering about names it was never told, and the last state is not always
    # the best. With no such rows every check counts; with none that declines enough, the last state is kept.
    stop_decline: float = 0.25

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"unknown training method {self.method!r}; choose one of {METHODS}")
        if self.max_steps < 0 or self.stop_every < 0 or self.stop_patience < 1:
            raise ValueError("max_steps and stop_every must be >= 0 and stop_patience >= 1")
        if self.lr_schedule not in LR_SCHEDULES or not 0.0 <= self.warmup_share < 1.0:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES} and warmup_share in [0, 1), not {self.lr_schedule!r}, {self.warmup_share}")
        if not 0.0 <= self.max_truncated_share <= 1.0:
            raise ValueError(f"max_truncated_share must be between 0 and 1, not {self.max_truncated_share}")


class TrainingRefused(ValueError):
    """The examples cannot be trained as configured (too many longer than the length cap); nothing was trained."""


def encode_full(tokenizer, question: str, answer: str) -> tuple[list[int], list[int]]:
    """Token ids and labels of one chat-formatted example, uncut; labels are -100 except on the answer (and its end token)."""
    prompt = tokenizer.apply_chat_template(memory_messages(question), add_generation_prompt=True, tokenize=False)
    full = tokenizer.apply_chat_template(memory_training_messages(question, answer), tokenize=False)
    if not full.startswith(prompt):
        raise ValueError("the chat template does not extend the prompt with the answer; cannot mask the prompt")
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(full[len(prompt) :].rstrip("\n"), add_special_tokens=False)["input_ids"]
    return prompt_ids + answer_ids, [-100] * len(prompt_ids) + answer_ids


def encode_example(tokenizer, question: str, answer: str, max_length: int) -> tuple[list[int], list[int]] | None:
    """The example cut to max_length tokens, or None when not one answer token is left."""
    ids, labels = encode_full(tokenizer, question, answer)
    if all(label == -100 for label in labels[:max_length]):
        return None
    return ids[:max_length], labels[:max_length]


def fit_to_length(measured: list[tuple[list[int], list[int]]], cap: int, max_cut_share: float) -> tuple[list[tuple[list[int], list[int]]], dict]:
    """Train at the longest example's length, up to `cap`; an example past the cap is cut (it loses its end token, so
    the memory does not learn where its answer stops) or dropped when its prompt alone fills the cap. Both are counted,
    and past max_cut_share of the examples the training is refused (TrainingRefused) rather than run on damaged rows."""
    lengths = sorted(len(ids) for ids, _ in measured)
    if not lengths:
        raise TrainingRefused("no training examples")
    length = min(cap, lengths[-1])
    fitted, truncated, dropped = [], 0, 0
    for ids, labels in measured:
        if len(ids) > length:
            if all(label == -100 for label in labels[:length]):
                dropped += 1
                continue
            truncated += 1
            ids, labels = ids[:length], labels[:length]
        fitted.append((ids, labels))
    report = {"max_length": length, "length_cap": cap, "longest_example": lengths[-1], "median_example": lengths[len(lengths) // 2],
              "truncated_examples": truncated, "dropped_examples": dropped, "cut_share": round((truncated + dropped) / len(lengths), 4)}
    if report["cut_share"] > max_cut_share or not fitted:
        raise TrainingRefused(
            f"{truncated} of {len(lengths)} training examples would be cut and {dropped} dropped at the {cap}-token cap "
            f"(share {report['cut_share']} > max_truncated_share {max_cut_share}); the longest is {lengths[-1]} tokens: "
            "raise the trainer's max_length, or shorten the reflections")
    return fitted, report


def epoch_order(encoded: list[tuple[list[int], list[int]]], config: TrainConfig, epoch: int) -> list[int]:
    """The examples' order in one epoch, a function of (seed, epoch) only, so a resumed run takes the same batches."""
    if config.group_by_length:
        import torch
        from transformers.trainer_pt_utils import get_length_grouped_indices

        generator = torch.Generator().manual_seed(config.seed + epoch)
        return get_length_grouped_indices([len(ids) for ids, _ in encoded], config.batch_size, generator=generator)
    order = list(range(len(encoded)))
    random.Random(config.seed + epoch).shuffle(order)
    return order


def collate(batch: list[tuple[list[int], list[int]]], pad_id: int, pack_length: int = 0):
    """Model inputs for one step: (input_ids, labels, model kwargs, real tokens, tokens computed).

    pack_length > 0 packs the step's examples into rows (first fit, longest first) with position ids restarting per
    example and a block-diagonal causal mask, so no example sees another: the same examples and the same loss as
    padding, with fewer padded tokens computed.
    """
    import torch

    rows: list[list[tuple[list[int], list[int]]]] = []
    for example in sorted(batch, key=lambda e: -len(e[0])) if pack_length > 0 else batch:
        row = next((r for r in rows if pack_length > 0 and sum(len(i) for i, _ in r) + len(example[0]) <= pack_length), None)
        if row is None:
            rows.append([example])
        else:
            row.append(example)
    width = max(sum(len(i) for i, _ in row) for row in rows)
    input_ids, labels, positions, segments = [], [], [], []
    for row in rows:
        pad = width - sum(len(i) for i, _ in row)
        input_ids.append([t for i, _ in row for t in i] + [pad_id] * pad)
        labels.append([t for _, lab in row for t in lab] + [-100] * pad)
        positions.append([p for i, _ in row for p in range(len(i))] + [0] * pad)
        segments.append([s for s, (i, _) in enumerate(row) for _ in i] + [-1] * pad)
    segment = torch.tensor(segments)
    if pack_length > 0:
        causal = torch.tril(torch.ones(width, width, dtype=torch.bool))
        same = (segment[:, :, None] == segment[:, None, :]) & (segment[:, :, None] >= 0)
        # padded queries attend to themselves only, so no row of the mask is empty (an empty row gives NaN)
        mask = (same & causal) | torch.eye(width, dtype=torch.bool)
        kwargs = {"attention_mask": mask[:, None], "position_ids": torch.tensor(positions)}
    else:
        kwargs = {"attention_mask": (segment >= 0).long()}
    return torch.tensor(input_ids), torch.tensor(labels), kwargs, int((segment >= 0).sum()), segment.numel()


def answer_loss(model, input_ids, labels, inputs: dict):
    """Cross-entropy on the answer tokens only, with the LM head run only at positions that predict one
    (logits_to_keep): the same loss as full logits, far less work with a 49k vocabulary. Goes through the model's
    own forward, so a DDP or DeepSpeed wrapper sees the call."""
    import torch

    targets = labels[:, 1:]
    keep = (targets != -100).any(dim=0).nonzero().squeeze(1)
    logits = model(input_ids=input_ids, **inputs, logits_to_keep=keep).logits
    chosen = targets[:, keep]
    mask = chosen != -100
    return torch.nn.functional.cross_entropy(logits[mask].float(), chosen[mask])


def trainable_state(model) -> dict:
    """A host-memory copy of the weights that train (the LoRA matrices; every weight for a full fine-tune)."""
    return {name: p.detach().to("cpu", copy=True) for name, p in model.named_parameters() if p.requires_grad}


def restore_trainable_state(model, state: dict) -> None:
    import torch

    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in state:
                p.copy_(state[name].to(p.device, p.dtype))


def stop_reason(checks: list[float], config: TrainConfig) -> str | None:
    """Why training stops after these recall checks ("reached", "plateau"), or None to go on."""
    if checks and checks[-1] >= config.stop_recall:
        return "reached"
    patience = config.stop_patience
    if len(checks) > patience and checks[-1] > 0 and max(checks[-patience:]) <= max(checks[:-patience]):
        return "plateau"
    return None


def stop_check(model, tokenizer, stop_rows: list[dict], max_new_tokens: int = 32, decline_tokens: int = 10) -> dict:
    """{"recall", "declined"} of the model being trained (put back in training mode after), answering greedily: the
    recall of the answerable stop rows' key answers, and the share of the "I don't know" rows it declines (None when
    there are none). A decline is its first words, so those rows get a short answer budget."""
    from memo_pipelines.qa import ask_memory, is_idk, recalled
    from memo_pipelines.llm.backends import LocalChatModel

    facts = [r for r in stop_rows if not is_idk(r["key_answer"])]
    unknown = [r["question"] for r in stop_rows if is_idk(r["key_answer"])]
    model.eval()
    try:
        memory = LocalChatModel.from_model(model, tokenizer)
        answers = ask_memory(memory, [r["question"] for r in facts], max_new_tokens) if facts else []
        declines = ask_memory(memory, unknown, decline_tokens) if unknown else []
    finally:
        model.train()
    return {"recall": round(sum(recalled(a, r["key_answer"]) for a, r in zip(answers, facts)) / max(1, len(facts)), 4),
            "declined": round(sum(map(is_idk, declines)) / len(declines), 4) if declines else None}


def eligible(check: dict, config: TrainConfig) -> bool:
    return check.get("declined") is None or check["declined"] >= config.stop_decline


def best_check(checks: list[dict], config: TrainConfig) -> dict | None:
    """The check whose state to keep: the best recall among the eligible ones, the earliest on a tie (fewer steps away
    from the parent model); None if none is."""
    kept = [c for c in checks if eligible(c, config)]
    return max(kept, key=lambda c: c["recall"]) if kept else None


CHECKPOINT_STEP_PREFIX = "step-"
COUNTERS = "counters.json"  # written last into a checkpoint folder: a folder without it is incomplete


def checkpoint_step_dir(checkpoint_dir: Path, step: int) -> Path:
    return Path(checkpoint_dir) / f"{CHECKPOINT_STEP_PREFIX}{step:07d}"


def latest_checkpoint(checkpoint_dir: Path | None) -> Path | None:
    """The newest complete checkpoint folder (step-NNNNNNN with its counters), or None."""
    if not checkpoint_dir or not Path(checkpoint_dir).is_dir():
        return None
    complete = sorted(d for d in Path(checkpoint_dir).glob(f"{CHECKPOINT_STEP_PREFIX}*") if d.is_dir() and not d.name.endswith(".partial")
                      and (d / COUNTERS).exists())
    return complete[-1] if complete else None


def keep_trainable_weights(models, weights, output_dir) -> None:
    """accelerate save_state pre-hook: a checkpoint holds what training changes (the adapter), not the frozen base.
    Under DeepSpeed `weights` is empty: the engine writes its own (sharded) model and optimizer states."""
    for index, model in enumerate(models):
        if index < len(weights):
            names = {name for name, param in model.named_parameters() if param.requires_grad}
            weights[index] = {name: tensor for name, tensor in weights[index].items() if name in names}


def save_checkpoint(accelerator, checkpoint_dir: Path, step: int, counters: dict, keep: int = 2) -> Path | None:
    """accelerate's save_state (model, optimizer, RNG; sharded per rank under DeepSpeed) into step-N.partial, counters
    last, then renamed, so a folder that looks complete is complete; the newest `keep` folders stay. Every process
    calls it (DeepSpeed's save is collective); the main process returns the folder."""
    final = checkpoint_step_dir(checkpoint_dir, step)
    partial = final.with_name(final.name + ".partial")
    if accelerator.is_main_process:
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(partial))
    accelerator.wait_for_everyone()
    if not accelerator.is_main_process:
        return None
    (partial / COUNTERS).write_text(json.dumps({"step": step, **counters}))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(partial, final)
    older = sorted(d for d in Path(checkpoint_dir).glob(f"{CHECKPOINT_STEP_PREFIX}*") if d.is_dir() and d != final and not d.name.endswith(".partial"))
    for stale in older[: max(0, len(older) - (keep - 1))]:
        shutil.rmtree(stale, ignore_errors=True)
    return final


def load_checkpoint(accelerator, checkpoint_dir: Path | None) -> dict | None:
    """Restore the newest complete checkpoint into the prepared model and optimizer; its counters, or None."""
    latest = latest_checkpoint(checkpoint_dir)
    if latest is None:
        return None
    accelerator.load_state(str(latest), strict=False)  # the checkpoint holds the trainable weights only
    return json.loads((latest / COUNTERS).read_text())


def training_dtype(accelerator):
    """float32 weights, with accelerate's autocast where mixed precision is set; under DeepSpeed with bf16 the engine
    keeps fp32 master weights in its optimizer, so the model itself loads in bf16 (half the memory at load)."""
    import torch
    from accelerate.utils import DistributedType

    if accelerator.distributed_type == DistributedType.DEEPSPEED and accelerator.mixed_precision == "bf16":
        return torch.bfloat16
    return torch.float32


def train_adapter(
    base_dir: Path,
    examples: list[dict],
    out_dir: Path,
    config: TrainConfig,
    progress: Callable[[dict], None] | None = None,
    checkpoint_dir: Path | None = None,
    stop_rows: list[dict] | None = None,
) -> dict:
    """Train a LoRA adapter on top of base_dir and save it (peft format) in out_dir; returns training figures.

    The step count follows the data: config.epochs passes over the examples at most (and config.max_steps), ended
    early once the recall of stop_rows ({question, key_answer}: a sample of the training facts), checked every
    config.stop_every steps after config.min_epochs passes, reaches config.stop_recall or stops rising (stop_reason).

    With checkpoint_dir, state is saved every config.checkpoint_every steps and a rerun resumes from it: the data order
    is a function of (seed, epoch), so the resumed run takes exactly the batches the killed one would have.
    """
    import torch
    from accelerate import Accelerator
    from peft import LoraConfig, get_peft_model
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, get_scheduler

    random.seed(config.seed)
    torch.manual_seed(config.seed)
    tokenizer = AutoTokenizer.from_pretrained(str(base_dir))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    # measured before the model loads, so a refusal costs seconds; the cap never exceeds the positions the model has
    positions = getattr(AutoConfig.from_pretrained(str(base_dir)), "max_position_embeddings", None) or config.max_length
    encoded, length = fit_to_length([encode_full(tokenizer, x["question"], x["answer"]) for x in examples],
                                    min(config.max_length, positions), config.max_truncated_share)
    # one process on a CPU; under `accelerate launch` (DDP or DeepSpeed) one per device, each taking a shard of every batch
    # every process takes a shard of the same batch (not a batch of its own), so the schedule steps once per optimizer step
    accelerator = Accelerator(cpu=not torch.cuda.is_available(), step_scheduler_with_optimizer=False)
    accelerator.register_save_state_pre_hook(keep_trainable_weights)
    model = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=training_dtype(accelerator))
    if config.method == "lora":
        model = get_peft_model(
            model,
            LoraConfig(
                r=config.lora_r,
                lora_alpha=config.lora_alpha,
                lora_dropout=config.lora_dropout,
                target_modules=config.target_modules,
                task_type="CAUSAL_LM",
            ),
        )
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.learning_rate)
    steps_per_epoch = math.ceil(len(encoded) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    if config.max_steps:
        total_steps = min(total_steps, config.max_steps)
    # over the planned steps; prepared with the model, so accelerate's checkpoints save and restore its position
    scheduler = get_scheduler("constant_with_warmup" if config.lr_schedule == "constant" else config.lr_schedule, optimizer,
                              num_warmup_steps=0 if config.lr_schedule == "constant" else round(config.warmup_share * total_steps),
                              num_training_steps=total_steps)
    stopping = bool(stop_rows) and config.stop_every > 0
    # a step cap shorter than min_epochs passes would leave no check, and so no choice of the state that still declines
    # unknown names: the checks then begin halfway through the budget
    first_check = min(config.min_epochs * steps_per_epoch, total_steps // 2)
    # the best checked state is copied to host memory; under DeepSpeed a process holds only shards, so the last is kept
    selecting = stopping and accelerator.state.deepspeed_plugin is None
    best_state = None
    losses, tokens, computed_tokens, started, step = [], 0, 0, time.time(), 0
    checks: list[dict] = []  # {"step", "recall", "declined"} of every early-stopping check
    stopped = None
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    resumed = load_checkpoint(accelerator, checkpoint_dir)
    main_process = accelerator.is_main_process
    progress = progress if main_process else None
    model.train()
    if resumed:
        step, losses, tokens, checks = resumed["step"], resumed["losses"], resumed["tokens"], resumed.get("stop_checks", [])
        if progress:
            progress({"resumed_from_step": step, "total_steps": total_steps})
    resumed_step, resumed_tokens = step, tokens
    resumed_checks = len(checks)  # the weights of checks before a resume are gone: only later ones can be kept
    for epoch in range(config.epochs):
        if step >= total_steps or stopped:
            break
        order = epoch_order(encoded, config, epoch)
        for batch_index, start in enumerate(range(0, len(order), config.batch_size)):
            if epoch * steps_per_epoch + batch_index < resumed_step:
                continue
            if step >= total_steps or stopped:
                break
            batch = [encoded[i] for i in order[start : start + config.batch_size]]
            shard = batch[accelerator.process_index :: accelerator.num_processes] or batch[:1]
            input_ids, labels, inputs, real, computed = collate(shard, pad_id, config.pack_length)
            inputs = {name: value.to(accelerator.device) for name, value in inputs.items()}
            loss = answer_loss(model, input_ids.to(accelerator.device), labels.to(accelerator.device), inputs)
            accelerator.backward(loss)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            tokens += real
            computed_tokens += computed
            losses.append(round(loss.item(), 5))
            if stopping and step % config.stop_every == 0 and step >= first_check and step < total_steps:
                # every process answers the same rows, so all of them take the same decision
                checks.append({"step": step, **stop_check(accelerator.unwrap_model(model), tokenizer, stop_rows)})
                stopped = stop_reason([c["recall"] for c in checks], config)
                if selecting and best_check(checks[resumed_checks:], config) is checks[-1]:
                    best_state = trainable_state(accelerator.unwrap_model(model))
            if checkpoint_dir and step % config.checkpoint_every == 0 and step < total_steps and not stopped:
                saved = save_checkpoint(accelerator, Path(checkpoint_dir), step, {"losses": losses, "tokens": tokens, "stop_checks": checks})
                if progress and saved:  # the launcher copies it to the object store, so a step re-executed elsewhere resumes
                    progress({"checkpoint": {"step": step, "path": str(saved)}})
            if progress and (step % config.log_every == 0 or step == total_steps or stopped):
                elapsed = time.time() - started
                progress({"step": step, "total_steps": total_steps, "epoch": epoch + 1, "loss": losses[-1], "tokens_per_s": round((tokens - resumed_tokens) / elapsed, 1),
                          "lr": float(f"{scheduler.get_last_lr()[0]:.3g}"),
                          **({"stop_recall": checks[-1]["recall"]} if checks and checks[-1]["step"] == step else {}), **({"stopped": stopped} if stopped else {})})
    accelerator.wait_for_everyone()
    model = accelerator.unwrap_model(model)
    selected = None
    if selecting and checks[resumed_checks:]:
        if checks[-1]["step"] != step:  # the last state was never checked: check it before choosing
            checks.append({"step": step, **stop_check(model, tokenizer, stop_rows)})
        selected = best_check(checks[resumed_checks:], config)
        if selected is not None and selected["step"] != step:
            restore_trainable_state(model, best_state)
    out_dir = Path(out_dir)
    if not main_process:
        return {}
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out_dir))
    if config.method == "full":  # a whole model: the merge stage uses it as the fine-tuned model directly
        tokenizer.save_pretrained(str(out_dir))
    figures = {
        "examples": len(encoded),
        "steps": step,
        "tokens": tokens,
        "padding_share": round(1 - (tokens - resumed_tokens) / max(1, computed_tokens), 4),
        "seconds": round(time.time() - started, 2),
        "final_loss": losses[-1],
        "loss_curve": losses,
        "resumed_from_step": resumed_step,
        "planned_steps": total_steps,
        "stopped_early": stopped,
        "stop_checks": checks,
        "stop_rows": len(stop_rows or []),
        "kept_step": selected["step"] if selected else step,  # the step whose weights were saved
        "length": length,
        "config": asdict(config),
    }
    (out_dir / "training.json").write_text(json.dumps(figures, indent=1))
    return figures


def launch_command(launcher: str, accelerate_config: str, spec_path: Path) -> list[str]:
    """'python': one process here; 'accelerate': `accelerate launch` with a config file (e.g. DeepSpeed ZeRO on GPUs)."""
    module = ["-m", "memo_pipelines.memory.training", str(spec_path)]
    if launcher == "python":
        return [sys.executable, *module]
    if launcher == "accelerate":
        config = ["--config_file", accelerate_config] if accelerate_config else []
        return [sys.executable, "-m", "accelerate.commands.launch", *config, *module]
    raise ValueError(f"unknown launcher {launcher!r}; choose 'python' or 'accelerate'")


def run_training_subprocess(spec: dict, work_dir: Path, on_progress: Callable[[dict], None], log: Callable[[str], None]) -> dict:
    """Launch training in a child Python process and stream its progress; raises with the log tail on failure."""
    import subprocess

    work_dir.mkdir(parents=True, exist_ok=True)
    spec_path = work_dir / "train_spec.json"
    spec_path.write_text(json.dumps(spec))
    child = subprocess.Popen(
        launch_command(spec.get("launcher", "python"), spec.get("accelerate_config", ""), spec_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"},
        start_new_session=True,  # its own process group: accelerate's workers go with it when the step stops
    )
    tail: list[str] = []
    refusal = None
    try:
        for line in child.stdout:
            if line.startswith(PROGRESS_PREFIX):
                on_progress(json.loads(line[len(PROGRESS_PREFIX) :]))
            elif line.startswith(ERROR_PREFIX):
                refusal = line[len(ERROR_PREFIX) :].strip()
            elif line.strip():
                tail = (tail + [line.rstrip()])[-40:]
        returncode = child.wait()
    except BaseException:
        # the step stops (a lost lease, a terminated run, an error in a callback): the training must not run on
        stop_process_group(child.pid, child=child)
        raise
    if returncode != 0 and refusal:
        raise TrainingRefused(refusal)
    if returncode != 0:
        raise RuntimeError("training process failed:\n" + "\n".join(tail))
    log("\n".join(tail[-5:]))
    return json.loads((Path(spec["out_dir"]) / "training.json").read_text())


def main(argv: list[str]) -> None:
    spec = json.loads(Path(argv[0]).read_text())
    examples = [json.loads(line) for line in Path(spec["examples_path"]).read_text().splitlines() if line.strip()]

    def report(figures: dict) -> None:
        print(PROGRESS_PREFIX + json.dumps(figures), flush=True)

    checkpoint_dir = Path(spec["checkpoint_dir"]) if spec.get("checkpoint_dir") else None
    try:
        train_adapter(Path(spec["base_dir"]), examples, Path(spec["out_dir"]), TrainConfig(**spec["config"]), report, checkpoint_dir,
                      spec.get("stop_rows"))
    except TrainingRefused as refusal:
        print(ERROR_PREFIX + str(refusal), flush=True)
        sys.exit(2)


if __name__ == "__main__":
    main(sys.argv[1:])
