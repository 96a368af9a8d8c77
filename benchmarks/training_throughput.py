"""Training throughput of the memory's training step against a plain PyTorch loop, and the padding packing removes.

Three steps over the same batches of the same LoRA model (SmolLM2-135M-Instruct, MuSiQue single-hop facts in the
memory's chat format, loss on the answer only):
  baseline   plain loop: padded batch, model(input_ids, labels) computes logits at every position;
  head-only  ours without packing: the LM head runs only at positions that predict an answer token (logits_to_keep);
  packed     ours: examples packed into rows with a block-diagonal mask, LM head at answer positions.

    .venv/bin/python benchmarks/training_throughput.py [--steps 12] [--quick] [--json FILE]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
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
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    base_dir = embedded_model_dir(ROOT / ".memo" / "work" / "embedded")
    tokenizer = AutoTokenizer.from_pretrained(str(base_dir))
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32),
                           LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM"))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    facts = [json.loads(line) for line in args.data.read_text().splitlines() if line.strip()] if args.data else single_hop_facts(DATA)
    random.Random(0).shuffle(facts)
    encoded = [encode_example(tokenizer, f["question"], f["answer"], 160) for f in facts[: args.steps * args.batch_size]]
    batches = [encoded[i : i + args.batch_size] for i in range(0, len(encoded), args.batch_size)]

    def baseline(batch):
        input_ids, labels, inputs, real, computed = collate(batch, tokenizer.pad_token_id, 0)
        return model(input_ids=input_ids, labels=labels, **inputs).loss, real, computed

    def ours(pack_length):
        def step(batch):  # the training loop's own loss
            input_ids, labels, inputs, real, computed = collate(batch, tokenizer.pad_token_id, pack_length)
            return answer_loss(model, input_ids, labels, inputs), real, computed
        return step

    results = {}
    variants = [("baseline", baseline), ("head-only", ours(0)), (f"packed {args.pack_length}", ours(args.pack_length)),
                (f"packed {args.pack_length // 2}", ours(args.pack_length // 2))]
    for name, step in variants:
        step(batches[0])[0].backward()  # warm-up, not timed
        optimizer.zero_grad(set_to_none=True)
        real_total = computed_total = 0
        losses = []
        started = time.perf_counter()
        for batch in batches:
            loss, real, computed = step(batch)
            loss.backward()
            optimizer.zero_grad(set_to_none=True)  # no optimizer.step: every variant sees the same weights
            real_total, computed_total = real_total + real, computed_total + computed
            losses.append(round(loss.item(), 4))
        seconds = time.perf_counter() - started
        results[name] = {"tokens_per_s": round(real_total / seconds, 1), "seconds_per_step": round(seconds / len(batches), 3),
                         "padding_share": round(1 - real_total / computed_total, 4), "mean_loss": round(sum(losses) / len(losses), 4)}

    print(f"{len(batches)} steps of {args.batch_size} examples ({args.data.name if args.data else 'MuSiQue single-hop facts'}), "
          f"SmolLM2-135M-Instruct + LoRA r=16, {os.cpu_count()} CPUs")
    print("| step | tokens/s | s/step | padding computed | mean loss | speed vs baseline |")
    print("|---|---|---|---|---|---|")
    for name, figures in results.items():
        ratio = figures["tokens_per_s"] / results["baseline"]["tokens_per_s"]
        figures["speed_vs_baseline"] = round(ratio, 3)
        print(f"| {name} | {figures['tokens_per_s']} | {figures['seconds_per_step']} | {figures['padding_share']:.1%} | {figures['mean_loss']} | {ratio:.2f}x |")
    if args.json:
        import peft
        import transformers

        args.json.write_text(json.dumps({"results": results, "configuration": {k: str(v) for k, v in vars(args).items()},
                                         "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__},
                                         "machine": {"platform": platform.platform(), "cpus": os.cpu_count()}}, indent=1))


if __name__ == "__main__":
    main()
