"""Training throughput and MFU of the memory's training step against a plain PyTorch loop, on the CPU or a GPU.

The same batches through the same model (MuSiQue single-hop facts in the memory's chat format, loss on the answer only):
  baseline   plain loop: padded batch, model(input_ids, labels) computes logits at every position;
  head-only  ours without packing: the LM head runs only at positions that predict an answer token (logits_to_keep);
  packed     ours: examples packed into rows with a block-diagonal mask, LM head at answer positions.

Models: `embedded` (SmolLM2-135M-Instruct, the default memory) or `llama-1b` (a Llama-3.2-1B-shaped model, random
initialised from a config with the embedded tokenizer: weights are not needed to measure speed). LoRA r=16 on every
projection by default, `--full` for full fine-tuning. On CUDA the model runs in bf16.

MFU = achieved model FLOP/s over the device's peak. Model FLOPs per trained token: 2N forward + 2N backward through the
activations (+2N weight gradients with --full), N the non-embedding parameters plus the LM head where it runs, plus
attention 12 * layers * hidden * mean length. The peak: the datasheet bf16 dense figure for a known GPU (H100/H200
989 TFLOP/s, A100 312), `--peak-tflops` to override; on the CPU a float32 matmul measured here, so the CPU MFU says
how much of what this machine can do the step uses.

    .venv/bin/python benchmarks/training_throughput.py [--device cpu|cuda] [--model embedded|llama-1b] [--steps 12] [--quick] [--json FILE]
"""

import argparse
import json
import os
import platform
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from incremental_update import DATA, single_hop_facts  # noqa: E402

from memo_pipelines.llm.embedded import embedded_model_dir  # noqa: E402
from memo_pipelines.memory.training import answer_loss, collate, encode_example  # noqa: E402

GPU_PEAK_TFLOPS = {"H200": 989.5, "H100": 989.5, "A100": 312.0, "L40S": 362.0, "A10G": 125.0, "L4": 121.0}  # bf16 dense


def peak_flops(device: str, override_tflops: float | None) -> tuple[float, str]:
    """(peak FLOP/s, where the figure comes from)."""
    import torch

    if override_tflops:
        return override_tflops * 1e12, "--peak-tflops"
    if device.startswith("cuda"):
        name = torch.cuda.get_device_name(device)
        for key, tflops in GPU_PEAK_TFLOPS.items():
            if key in name:
                return tflops * 1e12, f"{name} datasheet bf16 dense"
        raise SystemExit(f"no peak figure known for {name}: pass --peak-tflops")
    size, repeats = 1024, 8
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b  # warm-up
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - started), "float32 matmul measured on this CPU"


def build_model(kind: str, device: str, full: bool):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig

    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    base_dir = embedded_model_dir(ROOT / ".memo" / "work" / "embedded")
    tokenizer = AutoTokenizer.from_pretrained(str(base_dir))
    if kind == "embedded":
        model = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=dtype)
    else:  # the shape of Llama-3.2-1B with the embedded tokenizer's vocabulary
        config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                             num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=2048, tie_word_embeddings=True,
                             pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    model = model.to(device)
    if not full:
        model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM"))
    return model, tokenizer


def flops_per_token(model, mean_length: float, full: bool, head_share: float) -> float:
    """Training FLOPs per real token (see the module docstring); head_share: share of positions the LM head runs at."""
    config = model.config
    embedding = config.vocab_size * config.hidden_size
    body = sum(p.numel() for name, p in model.named_parameters() if "lora_" not in name) - embedding
    matmul_params = body + embedding * head_share  # tied head: its matmul runs where logits are computed
    per_param = 6 if full else 4
    return per_param * matmul_params + 12 * config.num_hidden_layers * config.hidden_size * mean_length


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--model", choices=["embedded", "llama-1b"], default="embedded")
    parser.add_argument("--full", action="store_true", help="full fine-tuning instead of LoRA r=16")
    parser.add_argument("--peak-tflops", type=float, help="the device's peak, where the table does not know it")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--pack-length", type=int, default=512)
    parser.add_argument("--data", type=Path, help="a JSONL of {question, answer} rows (e.g. a version's reflections.jsonl) instead of MuSiQue")
    parser.add_argument("--quick", action="store_true", help="3 steps each")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.quick:
        args.steps = 3

    import torch

    torch.manual_seed(0)
    peak, peak_source = peak_flops(args.device, args.peak_tflops)
    model, tokenizer = build_model(args.model, args.device, args.full)
    synchronise = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    facts = [json.loads(line) for line in args.data.read_text().splitlines() if line.strip()] if args.data else single_hop_facts(DATA)
    random.Random(0).shuffle(facts)
    encoded = [encode_example(tokenizer, f["question"], f["answer"], 160) for f in facts[: args.steps * args.batch_size]]
    batches = [encoded[i : i + args.batch_size] for i in range(0, len(encoded), args.batch_size)]

    def on_device(input_ids, labels, inputs):
        return input_ids.to(args.device), labels.to(args.device), {k: v.to(args.device) for k, v in inputs.items()}

    def baseline(batch):
        input_ids, labels, inputs, real, computed = collate(batch, tokenizer.pad_token_id, 0)
        input_ids, labels, inputs = on_device(input_ids, labels, inputs)
        return model(input_ids=input_ids, labels=labels, **inputs).loss, real, computed, 1.0

    def ours(pack_length):
        def step(batch):  # the training loop's own loss
            input_ids, labels, inputs, real, computed = collate(batch, tokenizer.pad_token_id, pack_length)
            head_share = float((labels[:, 1:] != -100).any(dim=0).float().mean())
            input_ids, labels, inputs = on_device(input_ids, labels, inputs)
            return answer_loss(model, input_ids, labels, inputs), real, computed, head_share
        return step

    mean_length = sum(len(ids) for ids, _ in encoded) / len(encoded)

    results = {}
    variants = [("baseline", baseline), ("head-only", ours(0)), (f"packed {args.pack_length}", ours(args.pack_length)),
                (f"packed {args.pack_length // 2}", ours(args.pack_length // 2))]
    for name, step in variants:
        step(batches[0])[0].backward()  # warm-up, not timed
        optimizer.zero_grad(set_to_none=True)
        real_total = computed_total = 0
        losses, head_shares = [], []
        synchronise()
        started = time.perf_counter()
        for batch in batches:
            loss, real, computed, head_share = step(batch)
            loss.backward()
            optimizer.zero_grad(set_to_none=True)  # no optimizer.step: every variant sees the same weights
            real_total, computed_total = real_total + real, computed_total + computed
            losses.append(round(loss.item(), 4))
            head_shares.append(head_share)
        synchronise()
        seconds = time.perf_counter() - started
        tokens_per_s = real_total / seconds
        # FLOPs of the real tokens only: padding computed is waste, not model work
        mfu = tokens_per_s * flops_per_token(model, mean_length, args.full, sum(head_shares) / len(head_shares)) / peak
        results[name] = {"tokens_per_s": round(tokens_per_s, 1), "seconds_per_step": round(seconds / len(batches), 3),
                         "padding_share": round(1 - real_total / computed_total, 4), "mean_loss": round(sum(losses) / len(losses), 4),
                         "mfu": round(mfu, 4)}

    parameters = sum(p.numel() for p in model.parameters())
    device_name = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else f"{os.cpu_count()} CPUs"
    print(f"{len(batches)} steps of {args.batch_size} examples ({args.data.name if args.data else 'MuSiQue single-hop facts'}), "
          f"{args.model} ({parameters / 1e6:.0f}M parameters) {'full' if args.full else '+ LoRA r=16'}, {device_name}; "
          f"peak {peak / 1e12:.2f} TFLOP/s ({peak_source})")
    print("| step | tokens/s | s/step | padding computed | mean loss | MFU | speed vs baseline |")
    print("|---|---|---|---|---|---|---|")
    for name, figures in results.items():
        ratio = figures["tokens_per_s"] / results["baseline"]["tokens_per_s"]
        figures["speed_vs_baseline"] = round(ratio, 3)
        print(f"| {name} | {figures['tokens_per_s']} | {figures['seconds_per_step']} | {figures['padding_share']:.1%} | {figures['mean_loss']} "
              f"| {figures['mfu']:.2%} | {ratio:.2f}x |")
    if args.json:
        import peft
        import transformers

        ours_name = f"packed {args.pack_length}"  # the training loop's default
        summary = {"device": device_name, "tokens_per_s": results[ours_name]["tokens_per_s"], "mfu": results[ours_name]["mfu"],
                   "vs_baseline": results[ours_name]["speed_vs_baseline"], "baseline_tokens_per_s": results["baseline"]["tokens_per_s"],
                   "baseline_mfu": results["baseline"]["mfu"], "peak_flops": peak, "peak_source": peak_source, "parameters": parameters}
        args.json.write_text(json.dumps({**summary, "results": results, "configuration": {k: str(v) for k, v in vars(args).items()},
                                         "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__},
                                         "machine": {"platform": platform.platform(), "cpus": os.cpu_count()}}, indent=1))


if __name__ == "__main__":
    main()
