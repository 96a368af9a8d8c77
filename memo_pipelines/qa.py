"""What every stage agrees on about a question and its answer: text normalisation, the memory's prompt and its
"I don't know", the recall check and row ids. A leaf: it imports no other memo_pipelines module, so synthesis,
training, evaluation and the protocol can all share it without importing each other."""

import hashlib
import re
from collections import Counter

STOPWORDS = set("a an the of in on at by for to from with and or is was were are be been its it this that as into than".split())
# a question's own words, which say nothing about its topic
QUESTION_WORDS = set("what which who whom whose when where why how many much does did do year".split())

MEMORY_SYSTEM = "You are a memory. Answer the question from what you know, in one short sentence. If you do not know, say: I don't know."
IDK = "I don't know"


def normalise(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def row_id(question: str, answer: str) -> str:
    """A reflection's or probe's id: the same question and answer, however cased or punctuated, is the same row."""
    return hashlib.sha1(f"{normalise(question)}\x00{normalise(answer)}".encode()).hexdigest()[:16]


def is_idk(answer: str) -> bool:
    """The memory declined (or said nothing): how the protocol retires a question and the report card counts abstention."""
    lowered = answer.lower()
    return not answer.strip() or "don't know" in lowered or "do not know" in lowered or "dont know" in lowered


# the memory is trained with the exact format it is queried with
def memory_messages(question: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": MEMORY_SYSTEM}, {"role": "user", "content": question.strip()}]


def memory_training_messages(question: str, answer: str) -> list[dict[str, str]]:
    return memory_messages(question) + [{"role": "assistant", "content": answer.strip()}]


def ask_memory(memory, questions: list[str], max_new_tokens: int = 48) -> list[str]:
    """The memory (a ChatModel) asked a batch of questions in its own prompt format."""
    return memory.chat([memory_messages(q) for q in questions], max_new_tokens=max_new_tokens)


def recalled(prediction: str, key_answer: str) -> bool:
    """A fact counts as recalled when its key answer appears in the memory's answer (normalised, word-bounded)."""
    key = normalise(key_answer)
    return bool(key) and re.search(rf"(^| ){re.escape(key)}( |$)", normalise(prediction)) is not None


def token_f1(prediction: str, gold: str) -> float:
    pred = [t for t in normalise(prediction).split() if t not in STOPWORDS]
    ref = [t for t in normalise(gold).split() if t not in STOPWORDS]
    common = sum((Counter(pred) & Counter(ref)).values())
    if not pred or not ref or common == 0:
        return float(pred == ref)
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)
