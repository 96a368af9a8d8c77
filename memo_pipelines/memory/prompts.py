"""Prompts shared by training and inference: the memory is trained with the exact format it is queried with."""

MEMORY_SYSTEM = "You are a memory. Answer the question from what you know, in one short sentence. If you do not know, say: I don't know."
IDK = "I don't know"


def is_idk(answer: str) -> bool:
    """The memory declined (or said nothing): how the protocol retires a question and the report card counts abstention."""
    lowered = answer.lower()
    return not answer.strip() or "don't know" in lowered or "do not know" in lowered or "dont know" in lowered


def memory_messages(question: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": MEMORY_SYSTEM}, {"role": "user", "content": question.strip()}]


def memory_training_messages(question: str, answer: str) -> list[dict[str, str]]:
    return memory_messages(question) + [{"role": "assistant", "content": answer.strip()}]
