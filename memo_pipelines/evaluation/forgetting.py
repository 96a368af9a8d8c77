"""Whether a memory still gives deleted documents' facts: the forget update's check and the forgetting gate's figure."""

from memo_pipelines.qa import ask_memory, is_idk, recalled

FORGET_ANSWER_TOKENS = 16  # a decline is the answer's first words; a deleted key answer is short


def check_forgotten(memory, targets: list[dict]) -> dict:
    """Ask the memory every forgotten question: how many still get their deleted key answer, and how many are declined."""
    answers = ask_memory(memory, [t["question"] for t in targets], FORGET_ANSWER_TOKENS) if targets else []
    given = [(t["question"], t["key_answer"], a) for t, a in zip(targets, answers) if recalled(a, t["key_answer"])]
    declined = sum(map(is_idk, answers))
    return {"asked": len(targets), "answered": len(given), "declined": declined,
            "answer_rate": round(len(given) / len(targets), 4) if targets else None,
            "decline_rate": round(declined / len(targets), 4) if targets else None,
            "still_given": [{"question": q, "deleted_answer": k, "answer": a} for q, k, a in given[:10]], "passed": not given}
