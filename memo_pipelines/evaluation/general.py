"""General ability: public questions with gold answers (a bundled sample of NQ-open), measured two ways.

Containment accuracy (a gold answer appears in the memory's answer) is what a user sees, but a 135M model gets few of
these questions right, so it moves in steps too coarse to see drift. The gold answer's log-likelihood per token, as
the memory's reply in the exact prompt format it is queried with, moves with every change of the weights: the gate
compares it with the base model's on the same questions.
"""

import json
import math
from pathlib import Path

from memo_pipelines.qa import ask_memory, memory_messages, recalled

GENERAL_SET = Path(__file__).parent / "data" / "nq_open_sample.jsonl"
REPLAY_SET = Path(__file__).parent / "data" / "nq_open_replay.jsonl"  # disjoint from GENERAL_SET


def general_replay_questions(path: Path = REPLAY_SET) -> list[str]:
    """Generic questions replayed in training with the base model's own answers: the short fixed list, then the bundled
    NQ-open questions the guard never asks (data/README.md)."""
    from memo_pipelines.evaluation.metrics import GENERAL_REPLAY

    return GENERAL_REPLAY + [json.loads(line)["question"] for line in Path(path).read_text().splitlines() if line.strip()]


def general_questions(limit: int, path: Path = GENERAL_SET) -> list[dict]:
    """The first `limit` questions of the bundled sample (itself a seeded random sample): [{question, answer: [...]}]."""
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    return rows[:limit]


def answer_loglik(memory, items: list[dict], batch_size: int = 16) -> list[float]:
    """Mean log-probability per token of each item's first gold answer as the memory's reply (teacher-forced)."""
    import torch

    tokenizer, model = memory.tokenizer, memory.model
    end = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    encoded = []
    for item in items:
        prompt = tokenizer.apply_chat_template(memory_messages(item["question"]), add_generation_prompt=True, tokenize=False)
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        answer_ids = tokenizer(str(item["answer"][0]).strip(), add_special_tokens=False)["input_ids"] + end
        encoded.append((prompt_ids, answer_ids))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    scores = []
    for start in range(0, len(encoded), batch_size):
        batch = encoded[start : start + batch_size]
        width = max(len(p) + len(a) for p, a in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, (p, a) in enumerate(batch):
            ids[row, : len(p) + len(a)] = torch.tensor(p + a)
            mask[row, : len(p) + len(a)] = 1
        with torch.no_grad():
            logits = model(input_ids=ids.to(model.device), attention_mask=mask.to(model.device)).logits
            logprobs = torch.log_softmax(logits.float(), dim=-1).cpu()
        for row, (p, a) in enumerate(batch):
            positions = torch.arange(len(p) - 1, len(p) + len(a) - 1)
            token_logprobs = logprobs[row, positions, torch.tensor(a)]
            scores.append(float(token_logprobs.mean()))
    return scores


def general_figures(memory, items: list[dict]) -> dict:
    """{"n", "accuracy", "loglik", "answers"} of a local memory model on general questions."""
    if not items:
        return {"n": 0, "accuracy": None, "loglik": None, "answers": []}
    answers = ask_memory(memory, [item["question"] for item in items])
    correct = [any(recalled(answer, gold) for gold in item["answer"]) for item, answer in zip(items, answers)]
    logliks = answer_loglik(memory, items)
    return {
        "n": len(items),
        "accuracy": round(sum(correct) / len(items), 4),
        "loglik": round(sum(logliks) / len(logliks), 4) if all(math.isfinite(x) for x in logliks) else None,  # None: non-finite weights
        "answers": [{"question": i["question"], "gold": i["answer"], "answer": a, "correct": c} for i, a, c in zip(items, answers, correct)][:20],
    }
