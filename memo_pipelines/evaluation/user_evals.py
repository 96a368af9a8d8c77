"""A user's own evaluation sets: every JSONL of {question, answer} under `evals/` in the bucket, scored for every
candidate closed book (the memory asked directly) and through the executive-memory protocol."""

import json

from memo_pipelines.qa import ask_memory, recalled, token_f1
from memo_pipelines.storage.layout import USER_EVALS_PREFIX


def load_user_evals(store, limit: int) -> tuple[dict[str, list[dict]], dict[str, str]]:
    """({set name: rows}, {set name: why it was skipped}). A row needs a question and an answer (a string or a list of
    accepted answers); a set with a bad line is skipped with the line number, never half-read."""
    sets, problems = {}, {}
    for obj in store.list_objects(USER_EVALS_PREFIX):
        if not obj.key.endswith(".jsonl"):
            continue
        name = obj.key[len(USER_EVALS_PREFIX):]
        try:
            sets[name] = parse_eval_set(store.get_bytes(obj.key))[:limit]
        except (ValueError, UnicodeDecodeError) as error:
            problems[name] = str(error)
    return sets, problems


def parse_eval_set(data: bytes) -> list[dict]:
    """The rows {question, answers} of one JSONL set; a ValueError naming the first bad line."""
    rows = []
    for number, line in enumerate(data.decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        row = json.loads(line)
        answers = row.get("answer") if isinstance(row, dict) else None
        answers = [answers] if isinstance(answers, str) else answers
        if not isinstance(row, dict) or not str(row.get("question", "")).strip() or not answers or not all(isinstance(a, str) for a in answers):
            raise ValueError(f"line {number}: needs a question and an answer (a string or a list of strings)")
        rows.append({"question": str(row["question"]).strip(), "answers": answers})
    return rows


def score_answers(rows: list[dict], answers: list[str]) -> dict:
    correct = [any(recalled(answer, gold) for gold in row["answers"]) for row, answer in zip(rows, answers)]
    f1 = [max(token_f1(answer, gold) for gold in row["answers"]) for row, answer in zip(rows, answers)]
    return {"n": len(rows), "recall": round(sum(correct) / len(rows), 4) if rows else None, "f1": round(sum(f1) / len(rows), 4) if rows else None,
            "samples": [{"question": r["question"], "gold": r["answers"], "answer": a, "correct": c} for r, a, c in zip(rows, answers, correct)][:5]}


def score_user_evals(sets: dict[str, list[dict]], memory, protocol_factory=None) -> dict:
    """{set: {"closed_book": figures, "protocol": figures or {"skipped": why}}}; protocol_factory(memory) -> Protocol."""
    out = {}
    for name, rows in sorted(sets.items()):
        closed = score_answers(rows, ask_memory(memory, [r["question"] for r in rows]))
        if protocol_factory is None:
            protocol = {"skipped": "no executive configured for protocol evaluation"}
        else:
            engine = protocol_factory(memory)
            protocol = score_answers(rows, [engine.ask(r["question"]).answer for r in rows])
        out[name] = {"closed_book": closed, "protocol": protocol}
    return out
