"""Scoring a memory's answers: token F1, key-answer recall, the memory asked a batch of questions, and the generic
questions replayed in training with the base model's own answers."""

import random
import re
from collections import Counter

from memo_pipelines.llm.backends import ChatModel
from memo_pipelines.memory.prompts import memory_messages
from memo_pipelines.reflections.text import STOPWORDS, normalise

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
# held out from training: the general-ability guard measures drift on questions the memory never trained on
GENERAL_GUARD = [
    "What is the capital of Italy?",
    "How many months are in a year?",
    "What colour is grass?",
    "What is three plus five?",
    "What do cows drink?",
    "What is the opposite of up?",
    "Which star is closest to the Earth?",
    "What is the main ingredient of bread?",
    "How many wheels does a bicycle have?",
    "What language is spoken in Germany?",
]



def token_f1(prediction: str, gold: str) -> float:
    pred = [t for t in normalise(prediction).split() if t not in STOPWORDS]
    ref = [t for t in normalise(gold).split() if t not in STOPWORDS]
    common = sum((Counter(pred) & Counter(ref)).values())
    if not pred or not ref or common == 0:
        return float(pred == ref)
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def recalled(prediction: str, key_answer: str) -> bool:
    """A fact counts as recalled when its key answer appears in the memory's answer (normalised, word-bounded)."""
    key = normalise(key_answer)
    return bool(key) and re.search(rf"(^| ){re.escape(key)}( |$)", normalise(prediction)) is not None


def ask_memory(memory: ChatModel, questions: list[str], max_new_tokens: int = 48) -> list[str]:
    return memory.chat([memory_messages(q) for q in questions], max_new_tokens=max_new_tokens)


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


def general_score(memory: ChatModel, general_reference: list[dict]) -> float:
    answers = ask_memory(memory, [g["question"] for g in general_reference])
    return sum(token_f1(a, g["answer"]) for a, g in zip(answers, general_reference)) / max(1, len(general_reference))
