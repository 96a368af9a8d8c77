"""Scoring a memory's answers: recall over sampled facts, the base model's own answers as references, and the generic
questions replayed in training with them. The recall check itself is shared (memo_pipelines/qa.py)."""

import random

from memo_pipelines.llm.backends import ChatModel
from memo_pipelines.qa import ask_memory, recalled

# generic questions paired with the base model's own answers: replayed in training so updates keep general ability
GENERAL_REPLAY = [
    "What is the capital of France?",
    "How many days are in a week?",
    "What colour is the sky on a clear day?",
    "What is two plus two?",
    "What do bees make?",
    "What is the opposite of hot?",
    "Which planet do we live on?",
    "What is frozen water called?",
    "How many legs does a spider have?",
    "What language is spoken in Spain?",
    "What do plants need from the sun to grow?",
    "What is the largest ocean on Earth?",
    "What animal is known as man's best friend?",
    "What is the boiling point of water in degrees Celsius?",
    "What gas do humans breathe in to live?",
]


def sample_facts(rows: list[dict], limit: int, seed: int = 0) -> list[dict]:
    # unanswerable probes teach the memory to decline; recall is measured on facts only
    facts = [r for r in rows if r.get("step") == "fact_extraction"] or [r for r in rows if r.get("step") != "unanswerable"]
    return sorted(facts, key=lambda r: r["id"]) if len(facts) <= limit else random.Random(seed).sample(sorted(facts, key=lambda r: r["id"]), limit)


def recall(memory: ChatModel, rows: list[dict]) -> tuple[float | None, list[dict]]:
    answers = ask_memory(memory, [r["question"] for r in rows])
    details = [
        {"question": r["question"], "expected": r["key_answer"], "answer": a, "recalled": recalled(a, r["key_answer"])}
        for r, a in zip(rows, answers)
    ]
    return (sum(d["recalled"] for d in details) / len(details) if details else None), details  # None: nothing measured


def base_answers(model: ChatModel, questions: list[str]) -> list[dict]:
    """The model's own answers as references: the general-ability replay set and guard."""
    return [{"question": q, "answer": a} for q, a in zip(questions, ask_memory(model, questions))]

