"""The executive-memory protocol: a frozen executive answers by asking the memory atomic questions.

Three stages (DESIGN.md): decompose into sub-questions, narrow to one entity over a ranked candidate list,
gather facts about it and synthesise. All sub-questions of one turn go to the memory as one batch. Any
executive failure (error, malformed reply) degrades to the memory's direct answer instead of failing.
"""

import json
import re
from collections import Counter
from dataclasses import asdict, dataclass, field

from .llm import ChatModel
from .prompts import IDK, memory_messages
from .reflections import entity_spans, normalise


@dataclass(frozen=True)
class ProtocolConfig:
    max_sub_questions: int = 4
    max_candidates: int = 3
    memory_max_new_tokens: int = 48
    executive_max_new_tokens: int = 128


@dataclass
class Turn:
    stage: str
    sub_questions: list[str]
    memory_answers: list[str]


@dataclass
class Answer:
    question: str
    answer: str
    target: str | None
    trace: list[Turn] = field(default_factory=list)
    executive_calls: int = 0
    memory_calls: int = 0
    retired: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)


DECOMPOSE_PROMPT = """Split the question into at most {n} short sub-questions that can each be answered by looking up one fact.
Each sub-question must stand alone and name what it asks about.
Reply with only a JSON list of strings.
Question: {question}"""

PICK_PROMPT = """Question: {question}
Facts from memory:
{facts}
Candidates: {candidates}
Which candidate does the question ask about or depend on? Reply with only JSON: {{"entity": "<one candidate or none>"}}"""

SYNTHESIS_PROMPT = """Answer the question using only the facts from memory below.
Facts from memory:
{facts}
Question: {question}
Reply with only JSON: {{"answer": "<short answer, or {idk} if the facts do not answer it>"}}"""


def is_idk(answer: str) -> bool:
    return not answer.strip() or "don't know" in answer.lower() or "do not know" in answer.lower()


def parse_json_value(reply: str):
    for pattern in (r"\[.*\]", r"\{.*\}"):
        match = re.search(pattern, reply, re.S)
        if match:
            try:
                return json.loads(match.group(0))
            except json.JSONDecodeError:
                continue
    return None


class Protocol:
    def __init__(self, executive: ChatModel, memory: ChatModel, config: ProtocolConfig = ProtocolConfig()):
        self.executive, self.memory, self.config = executive, memory, config

    def _ask_memory(self, result: Answer, stage: str, questions: list[str]) -> list[str]:
        answers = self.memory.chat([memory_messages(q) for q in questions], max_new_tokens=self.config.memory_max_new_tokens)
        result.memory_calls += 1
        result.trace.append(Turn(stage, questions, answers))
        return answers

    def _ask_executive(self, result: Answer, prompt: str) -> str | None:
        result.executive_calls += 1
        try:
            return self.executive.chat([[{"role": "user", "content": prompt}]], max_new_tokens=self.config.executive_max_new_tokens)[0]
        except Exception as error:  # a failing executive degrades the answer, it never fails the question
            result.notes.append(f"executive call failed: {type(error).__name__}: {error}")
            return None

    def decompose(self, result: Answer, question: str) -> list[str]:
        reply = self._ask_executive(result, DECOMPOSE_PROMPT.format(n=self.config.max_sub_questions, question=question))
        parsed = parse_json_value(reply or "")
        if not isinstance(parsed, list):
            parsed = re.findall(r"[^\n\"]*\?", reply or "")
            if reply is not None:
                result.notes.append("decomposition was not a JSON list; used the question lines it contained")
        subs = [question] + [s.strip() for s in parsed if isinstance(s, str) and s.strip().endswith("?")]
        return list(dict.fromkeys(subs))[: self.config.max_sub_questions + 1]

    def ask(self, question: str) -> Answer:
        result = Answer(question=question, answer=IDK, target=None)
        # stage 1: decompose, one memory batch
        subs = self.decompose(result, question)
        answers = self._ask_memory(result, "decompose", subs)
        facts = [(q, a) for q, a in zip(subs, answers) if not is_idk(a)]
        result.retired = [q for q, a in zip(subs, answers) if is_idk(a)]
        direct = answers[0]
        # stage 2: narrow to one entity over candidates ranked by how many answers name them
        named = {normalise(e) for e in entity_spans(question)}
        counts = Counter(e for _, a in facts for e in dict.fromkeys(entity_spans(a)) if normalise(e) not in named)
        candidates = [e for e, _ in counts.most_common(self.config.max_candidates)]
        if candidates:
            reply = self._ask_executive(
                result, PICK_PROMPT.format(question=question, facts=format_facts(facts), candidates=json.dumps(candidates))
            )
            picked = parse_json_value(reply or "")
            entity = picked.get("entity") if isinstance(picked, dict) else None
            result.target = entity if entity in candidates else candidates[0]
            # stage 3: gather facts about the target, one memory batch
            gather = [f"What is known about {result.target}?"]
            facts += [(q, a) for q, a in zip(gather, self._ask_memory(result, "gather", gather)) if not is_idk(a)]
        if not facts:
            return result
        reply = self._ask_executive(result, SYNTHESIS_PROMPT.format(idk=IDK, facts=format_facts(facts), question=question))
        parsed = parse_json_value(reply or "")
        synthesised = parsed.get("answer") if isinstance(parsed, dict) else None
        if not isinstance(synthesised, str) or not synthesised.strip() or (is_idk(synthesised) and not is_idk(direct)):
            result.notes.append("synthesis gave no usable JSON answer; answered with the memory's direct answer")
            result.answer = direct
        else:
            result.answer = synthesised.strip()
        return result


def format_facts(facts: list[tuple[str, str]]) -> str:
    return "\n".join(f"- {q} {a}" for q, a in facts)
