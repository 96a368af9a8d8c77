"""The hybrid route: the memory answers, and every answer is checked against passages retrieved from the live corpus.

For each question the BM25 top-k passages are retrieved (passages.py). A memory answer whose own words (those the
question does not already say) stand in one sentence of a retrieved passage is verified, and that sentence is quoted
with its document id and character span. Otherwise the reader (the same small model, or the executive) answers from
the passages (optionally shown the memory's answer beside them) and its answer is verified the same way. Questions
after exact values (numbers, dates, quoted names) go to the passages first: a memory's digits are the part of its
answer least to be trusted. When no passage supports either answer, the reader's (read from the passages) is kept and
marked unverified, or the memory's, or "I don't know", by settings.
"""

import re
from dataclasses import asdict, dataclass

from memo_pipelines.qa import IDK, QUESTION_WORDS, STOPWORDS, is_idk, normalise

from .passages import Passage, PassageIndex, reader_messages

# question words that ask for an exact value; a digit or a quotation in the question asks for one verbatim
EXACT_VALUE = re.compile(r"\b(how many|how much|what year|which year|in what year|when|what date|how old|how long|what percentage)\b|\d|\"", re.I)
UNSUPPORTED = ("mark", "decline")
UNVERIFIED_ANSWERS = ("passages", "memory")


@dataclass(frozen=True)
class HybridConfig:
    top_k: int = 3  # passages retrieved per question
    unsupported: str = "mark"  # mark: keep an answer no passage supports, marked unverified; decline: answer "I don't know"
    # which answer "mark" keeps when neither is supported: the reader's, read from the retrieved passages, or the
    # memory's. On MuSiQue's human questions the memory's unsupported answers were wrong where its right ones were
    # verified (benchmarks/RESULTS.md), so the answer read from the passages is kept
    unverified_answer: str = "passages"
    exact_to_passages: bool = True  # questions after exact values are answered from the passages first
    # the reader sees the memory's answer beside the passages: on the human-questions smoke run it misled the reader
    # (answer recall 0.19 against 0.31 without it), so choosing between the two is the default
    read_with_memory: bool = False
    support_share: float = 0.6  # of the answer's own words one sentence of a passage must state
    # a memory answer the question's own passages do not support is checked once more against the passages retrieved for
    # the question and the answer together (generation-augmented retrieval): the memory's words find a passage the
    # question's words alone ranked too low
    memory_query: bool = False
    reader_max_new_tokens: int = 24

    def __post_init__(self):
        if self.unsupported not in UNSUPPORTED:
            raise ValueError(f"unsupported must be one of {UNSUPPORTED}, not {self.unsupported!r}")
        if self.unverified_answer not in UNVERIFIED_ANSWERS:
            raise ValueError(f"unverified_answer must be one of {UNVERIFIED_ANSWERS}, not {self.unverified_answer!r}")


@dataclass
class Evidence:
    doc_id: str
    start: int  # character span of the quoted sentence in the document's text
    end: int
    quote: str


@dataclass
class HybridAnswer:
    question: str
    answer: str
    verified: bool
    route: str  # "memory": the memory's answer, verified; "passages": the reader's; "unverified"; "declined"
    memory_answer: str
    evidence: Evidence | None = None

    def to_json(self) -> dict:
        return asdict(self)


def own_words(answer: str, question: str) -> list[str]:
    """The answer's content words that the question does not already say: what a passage has to support."""
    asked = set(normalise(question).split())
    return [w for w in dict.fromkeys(normalise(answer).split()) if w not in STOPWORDS and w not in asked]


def sentence_spans(text: str) -> list[tuple[int, int]]:
    spans, start = [], 0
    for match in re.finditer(r"(?<=[.!?])\s+|\n+", text):
        if match.start() > start:
            spans.append((start, match.start()))
        start = match.end()
    if start < len(text):
        spans.append((start, len(text)))
    return spans


def asked_words(question: str) -> set[str]:
    """The question's content words: what a supporting sentence must be about."""
    return {w for w in normalise(question).split() if w not in STOPWORDS and w not in QUESTION_WORDS}


def support(answer: str, question: str, passages: list[Passage], share: float) -> Evidence | None:
    """The passage sentence that states most of the answer's own words (ties: the one saying most of the question's
    words), if it states at least `share` of them and at least one of the question's words. A sentence that only
    names the answer (a heading "# Tennessee" for "Which state ...? Tennessee") says nothing about what was asked."""
    words = own_words(answer, question)
    if not words or is_idk(answer):
        return None
    asked = asked_words(question)
    best, best_score = None, (0.0, 0)
    for passage in passages:
        for start, end in sentence_spans(passage.text):
            stated = set(normalise(passage.text[start:end]).split())
            about = len(asked & stated)
            score = (sum(w in stated for w in words) / len(words), about)
            if (about or not asked) and score > best_score:
                best, best_score = Evidence(passage.doc_id, passage.start + start, passage.start + end, passage.text[start:end].strip()), score
    return best if best_score[0] >= share else None


class HybridRoute:
    """Memory answers checked against the live corpus's passages; `reader` answers from the passages where they fail."""

    def __init__(self, reader, index: PassageIndex, config: HybridConfig | None = None):
        self.reader, self.index, self.config = reader, index, config or HybridConfig()

    def answer(self, questions: list[str], memory_answers: list[str]) -> list[HybridAnswer]:
        config = self.config
        retrieved = [self.index.top(q, config.top_k) for q in questions]
        out: list[HybridAnswer | None] = [None] * len(questions)
        for i, (question, memory, passages) in enumerate(zip(questions, memory_answers, retrieved)):
            if config.exact_to_passages and EXACT_VALUE.search(question):
                continue
            evidence = support(memory, question, passages, config.support_share)
            if not evidence and config.memory_query and not is_idk(memory):
                evidence = support(memory, question, self.index.top(f"{question} {memory}", config.top_k), config.support_share)
            if evidence:
                out[i] = HybridAnswer(question, memory, True, "memory", memory, evidence)
        todo = [i for i, answer in enumerate(out) if answer is None]
        if todo:
            conversations = []
            for i in todo:
                shown = list(retrieved[i])
                if config.read_with_memory and not is_idk(memory_answers[i]):
                    shown.append(Passage("memory", 0, 0, f"A memory model answered: {memory_answers[i]}"))
                conversations.append(reader_messages(questions[i], shown))
            read = self.reader.chat(conversations, max_new_tokens=config.reader_max_new_tokens)
            for i, reader_answer in zip(todo, read):
                question, memory = questions[i], memory_answers[i]
                evidence = support(reader_answer, question, retrieved[i], config.support_share)
                if evidence:
                    out[i] = HybridAnswer(question, reader_answer.strip(), True, "passages", memory, evidence)
                    continue
                memory_support = support(memory, question, retrieved[i], config.support_share)
                if memory_support:  # an exact-value question whose memory answer the passages do state
                    out[i] = HybridAnswer(question, memory, True, "memory", memory, memory_support)
                elif config.unsupported == "decline":
                    out[i] = HybridAnswer(question, IDK, False, "declined", memory)
                else:
                    read = reader_answer.strip()
                    prefer_read = config.unverified_answer == "passages" and read and not is_idk(read)
                    kept = read if prefer_read or is_idk(memory) else memory
                    out[i] = HybridAnswer(question, kept, False, "unverified", memory)
        return out


def verified_answer(answer, checked: HybridAnswer):
    """The protocol's Answer with the hybrid route's verdict: its text, then the quote that supports it (or that none
    does), and the quoted document as its source."""
    if checked.evidence:
        e = checked.evidence
        answer.answer = f'{checked.answer}\n\nVerified: {e.doc_id}, characters {e.start}-{e.end}: "{e.quote}"'
        answer.sources = [e.doc_id]
    else:
        answer.answer = checked.answer + ("" if checked.route == "declined" else "\n\nUnverified: no retrieved passage states it.")
    return answer
