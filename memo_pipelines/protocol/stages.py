"""The three stages of DESIGN.md: decompose, narrow over ranked candidates, gather facts and synthesise.

Every turn sends all its sub-questions (and their paraphrases) to the memory as one batch; the memory is stateless.
A failing executive (error, timeout, no usable JSON after one repair request) degrades the answer to the memory's
own answer to the question instead of failing, and a question never outlives its deadline.
"""

from collections import Counter
from dataclasses import asdict, dataclass, field

from memo_pipelines.llm.backends import ChatModel
from memo_pipelines.qa import IDK, is_idk, memory_messages
from memo_pipelines.reflections.synthesis import normalise
from . import prompts
from .calls import Deadline, call_with_timeout, parse_json_reply
from .sources import SourceIndex

MODES = ("staged", "single", "direct")


@dataclass(frozen=True)
class ProtocolConfig:
    mode: str = "staged"  # staged: the three stages; single: one decomposition, one memory batch, one synthesis; direct: memory only
    max_sub_questions: int = 4  # per turn, besides the question itself in the first turn
    max_candidates: int = 3
    narrow_turns: int = 3  # turn budget of stage 2
    gather_turns: int = 1  # turn budget of stage 3
    retire_after: int = 2  # "I don't know"s before a question is retired
    paraphrases: int = 1  # k: each sub-question is asked k ways and the majority answer wins
    json_retries: int = 1  # repair requests after a reply with no usable JSON
    memory_max_new_tokens: int = 48
    executive_max_new_tokens: int = 256
    call_timeout_s: float = 60.0  # per executive or memory call
    deadline_s: float = 180.0  # per question, all calls together

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"unknown protocol mode {self.mode!r}; choose one of {MODES}")


def _texts(max_items: int, max_length: int = 200, min_items: int = 0) -> dict:
    item = {"type": "string", "minLength": 1, "maxLength": max_length}
    return {"type": "array", "items": item, "minItems": min(min_items, max_items), "maxItems": max_items}


def _reply(name: str, properties: dict) -> dict:
    """An OpenAI `response_format` for one stage's JSON object (bounded, so a small model cannot ramble past its budget)."""
    schema = {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}


def reply_formats(config: ProtocolConfig) -> dict[str, dict]:
    """The schema of each executive prompt's reply, sent as `response_format` to an executive that takes one."""
    # a plan asks at least one sub-question and names at least one candidate: the next stage always has work
    subs, first_subs = _texts(config.max_sub_questions), _texts(config.max_sub_questions, min_items=1)
    fact_numbers = {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 999}, "maxItems": 8}
    answer = {"type": "string", "pattern": r"^\S(.*\S)?$", "maxLength": 120}  # a phrase, not blank
    return {
        "decompose": _reply("decompose", {"clues": _texts(6), "sub_questions": first_subs}),
        "narrow": _reply("narrow", {"candidates": _texts(config.max_candidates, 120, min_items=1),
                                    "confirmed": {"type": ["string", "null"], "maxLength": 120}, "sub_questions": subs}),
        "gather": _reply("gather", {"sub_questions": first_subs}),
        "synthesise": _reply("synthesise", {"answer": answer, "facts_used": fact_numbers,
                                            "clues_satisfied": {"type": "integer", "minimum": 0, "maximum": 99}}),
        "single": _reply("single", {"answer": answer, "facts_used": fact_numbers}),
    }


@dataclass
class Turn:
    stage: str
    sub_questions: list[str]
    memory_answers: list[str]


@dataclass
class Answer:
    question: str
    answer: str
    target: str | None = None
    candidates: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)  # document ids the facts used came from
    facts_used: list[dict] = field(default_factory=list)  # {question, answer, reflection_ids, source_doc_ids}
    trace: list[Turn] = field(default_factory=list)
    executive_calls: int = 0
    executive_replies: int = 0  # executive calls that returned a reply (not an error or a timeout)
    executive_replies_parsed: int = 0  # ... of which the reply held usable JSON
    memory_calls: int = 0
    retired: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0

    def to_json(self) -> dict:
        return asdict(self)


# paraphrases are fixed rewordings, so voting costs no executive call; the first is the question as trained
PARAPHRASES = ("{q}", "Answer briefly. {q}", "{q} Answer in a few words.", "Question: {q}", "Please tell me: {q}")


def paraphrases(question: str, k: int) -> list[str]:
    return [template.format(q=question) for template in PARAPHRASES[: max(1, min(k, len(PARAPHRASES)))]]


def majority(answers: list[str]) -> str:
    """The most common answer (normalised); ties go to a known answer, then to the earliest phrasing."""
    votes = Counter(normalise(a) for a in answers)
    return max(answers, key=lambda a: (votes[normalise(a)], not is_idk(a), -answers.index(a)))


class Protocol:
    def __init__(self, executive: ChatModel | None, memory: ChatModel, config: ProtocolConfig = ProtocolConfig(),
                 sources: SourceIndex | None = None):
        self.executive, self.memory, self.config, self.sources = executive, memory, config, sources
        self.reply_formats = reply_formats(config)

    # -- calls --------------------------------------------------------------------------------------------------
    def _memory_turn(self, run: "Run", stage: str, questions: list[str]) -> list[str]:
        """One memory batch for the turn's questions and their paraphrases; retired questions are not asked."""
        questions = [q for q in dict.fromkeys(q.strip() for q in questions if q and q.strip()) if normalise(q) not in run.retired]
        if not questions:
            return []
        batch = [p for q in questions for p in paraphrases(q, self.config.paraphrases)]
        try:
            replies = call_with_timeout(
                lambda: self.memory.chat([memory_messages(p) for p in batch], max_new_tokens=self.config.memory_max_new_tokens),
                min(self.config.call_timeout_s, run.deadline.remaining()),
            )
        except Exception as error:  # a failed memory turn leaves the questions unanswered, it never fails the question
            run.answer.notes.append(f"memory call failed in {stage}: {type(error).__name__}: {error}")
            replies = None
        finally:
            run.answer.memory_calls += 1
        k = len(batch) // len(questions)
        answers = [majority(replies[i * k : (i + 1) * k]) for i in range(len(questions))] if replies else [IDK] * len(questions)
        run.answer.trace.append(Turn(stage, questions, answers))
        for question, answer in zip(questions, answers):
            if replies is None:
                continue  # a failed call is no evidence that the memory does not know
            if is_idk(answer):
                run.idk[normalise(question)] += 1
                if run.idk[normalise(question)] >= self.config.retire_after:
                    run.retired[normalise(question)] = question
            else:
                run.facts.append((question, answer))
        return answers

    def _executive_json(self, run: "Run", stage: str, prompt: str, expect: type = dict):
        """The executive's JSON reply, asked for with the stage's schema where the executive takes one (then it always
        parses), else repaired or asked for once more; None when it cannot be had."""
        if self.executive is None:
            return None
        structured = {"response_format": self.reply_formats[stage]} if getattr(self.executive, "structured_output", False) else {}
        conversation = [{"role": "user", "content": prompt}]
        for attempt in range(1 + self.config.json_retries):
            if run.deadline.passed():
                run.answer.notes.append("deadline reached before an executive call")
                return None
            run.answer.executive_calls += 1
            try:
                reply = call_with_timeout(
                    lambda: self.executive.chat([conversation], max_new_tokens=self.config.executive_max_new_tokens, **structured)[0],
                    min(self.config.call_timeout_s, run.deadline.remaining()),
                )
            except Exception as error:  # a failing executive degrades the answer, it never fails the question
                run.answer.notes.append(f"executive call failed: {type(error).__name__}: {error}")
                return None
            value = parse_json_reply(reply, expect)
            run.answer.executive_replies += 1
            if value is not None:
                run.answer.executive_replies_parsed += 1
                return value
            run.answer.notes.append(f"executive reply had no usable JSON (attempt {attempt + 1})")
            conversation = conversation + [{"role": "assistant", "content": reply}, {"role": "user", "content": prompts.REPAIR}]
        return None

    # -- stages -------------------------------------------------------------------------------------------------
    def decompose(self, run: "Run") -> None:
        plan = self._executive_json(run, "decompose", prompts.DECOMPOSE.format(question=run.question, n=self.config.max_sub_questions))
        subs = []
        if plan is None:
            run.answer.notes.append("no decomposition; asked the memory the question directly")
        else:
            run.clues = [str(c) for c in _strings(plan.get("clues"))]
            subs = _strings(plan.get("sub_questions"))[: self.config.max_sub_questions]
        run.direct = self._memory_turn(run, "decompose", [run.question] + subs)[0]
        run.planned = plan is not None

    def narrow(self, run: "Run") -> None:
        for _ in range(self.config.narrow_turns):
            reply = self._executive_json(run, "narrow", prompts.NARROW.format(
                question=run.question, clues=run.clues, facts=prompts.numbered(run.facts), retired=list(run.retired.values()),
                n=self.config.max_sub_questions))
            if reply is None:
                run.answer.notes.append("narrowing stopped: no usable executive reply")
                return
            run.answer.candidates = [str(c) for c in _strings(reply.get("candidates"))][: self.config.max_candidates]
            confirmed = reply.get("confirmed")
            if isinstance(confirmed, str) and confirmed.strip() and confirmed.strip().lower() not in ("null", "none"):
                run.answer.target = confirmed.strip()
                return
            follow_ups = [q for q in _strings(reply.get("sub_questions")) if normalise(q) not in run.retired]
            if not follow_ups:
                run.answer.notes.append("narrowing ended: the executive had no new questions")
                break
            self._memory_turn(run, "narrow", follow_ups[: self.config.max_sub_questions])
        else:
            run.answer.notes.append(f"narrowing budget of {self.config.narrow_turns} turns exhausted")
        run.answer.target = run.answer.candidates[0] if run.answer.candidates else None

    def gather(self, run: "Run") -> None:
        if not run.answer.target:
            return
        for _ in range(self.config.gather_turns):
            reply = self._executive_json(run, "gather", prompts.GATHER.format(
                question=run.question, target=run.answer.target, facts=prompts.numbered(run.facts), n=self.config.max_sub_questions))
            questions = _strings((reply or {}).get("sub_questions")) or [f"What is known about {run.answer.target}?"]
            self._memory_turn(run, "gather", questions[: self.config.max_sub_questions])

    def synthesise(self, run: "Run", template: str) -> None:
        reply = None
        if run.facts and run.planned:  # an executive that could not plan gets no second chance at the answer
            reply = self._executive_json(run, "synthesise" if template == prompts.SYNTHESISE else "single", template.format(
                question=run.question, clues=run.clues, candidates=run.answer.candidates, facts=prompts.numbered(run.facts)))
        answer = (reply or {}).get("answer")
        if isinstance(answer, str) and answer.strip() and not (is_idk(answer) and not is_idk(run.direct)):
            run.answer.answer = answer.strip()
            used = [run.facts[i - 1] for i in (reply.get("facts_used") or []) if isinstance(i, int) and 0 < i <= len(run.facts)]
        else:
            if run.facts and run.planned:
                run.answer.notes.append("no usable synthesis; answered with the memory's own answer to the question")
            run.answer.answer = run.direct
            used = [(run.question, run.direct)] if not is_idk(run.direct) else []
        self._attribute(run, used or [f for f in run.facts if normalise(run.answer.answer) in normalise(f[1])])

    def _attribute(self, run: "Run", used: list[tuple[str, str]]) -> None:
        for question, answer in used:
            matched = self.sources.attribute(question, answer) if self.sources else []
            run.answer.facts_used.append({"question": question, "answer": answer, "reflection_ids": [r["id"] for r in matched],
                                          "source_doc_ids": sorted({d for r in matched for d in r["source_doc_ids"]})})
        run.answer.sources = list(dict.fromkeys(d for fact in run.answer.facts_used for d in fact["source_doc_ids"]))

    def ask(self, question: str) -> Answer:
        run = Run(question, Deadline(self.config.deadline_s))
        if self.config.mode == "direct" or self.executive is None:
            run.direct = run.answer.answer = self._memory_turn(run, "direct", [question])[0]
            self._attribute(run, [] if is_idk(run.direct) else [(question, run.direct)])
        else:
            self.decompose(run)
            if self.config.mode == "staged" and run.planned:
                self.narrow(run)
                self.gather(run)
            self.synthesise(run, prompts.SYNTHESISE if self.config.mode == "staged" else prompts.SINGLE_TURN)
        if run.deadline.passed():
            run.answer.notes.append(f"deadline of {self.config.deadline_s} s reached")
        run.answer.retired = list(run.retired.values())
        run.answer.elapsed_s = round(self.config.deadline_s - run.deadline.remaining(), 3)
        return run.answer


class Run:
    """The state of one question: facts so far, "I don't know" counts, retired questions, the deadline."""

    def __init__(self, question: str, deadline: Deadline):
        self.question, self.deadline = question, deadline
        self.answer = Answer(question=question, answer=IDK)
        self.facts: list[tuple[str, str]] = []
        self.idk: Counter = Counter()
        self.retired: dict[str, str] = {}
        self.clues: list[str] = []
        self.direct, self.planned = IDK, False


def _strings(value) -> list[str]:
    return [v.strip() for v in value if isinstance(v, str) and v.strip()] if isinstance(value, list) else []
