"""The protocol's control flow: a scripted executive behind a real OpenAI-compatible server, a tiny trained memory."""

import json
import re

import pytest

from memo_pipelines.llm.backends import LLMSpec, LocalChatModel, OpenAIChatModel
from memo_pipelines.memory.merging import fold_adapter
from memo_pipelines.protocol import Protocol, ProtocolConfig, SourceIndex, parse_json_reply
from memo_pipelines.protocol.prompts import REPAIR
from memo_pipelines.memory.training import TrainConfig, train_adapter
from tests.openai_stub import ScriptedOpenAI

MANAGER_Q, BIRTH_Q, FOUNDER_Q = "Who is the manager of the Kesby plant?", "Where was Rafael Ondo born?", "Who founded the Kesby plant?"
FACTS = [(MANAGER_Q, "Rafael Ondo"), (BIRTH_Q, "Tarsby"), (FOUNDER_Q, "I don't know")]
REFLECTIONS = [
    {"id": "r1", "question": MANAGER_Q, "answer": "Rafael Ondo", "source_doc_ids": ["kesby.md"]},
    {"id": "r2", "question": BIRTH_Q, "answer": "Tarsby", "source_doc_ids": ["ondo.md"]},
]
QUESTION = "Where was the manager of the Kesby plant born?"


class CountingMemory:
    """The memory, recording each batch it is sent."""

    def __init__(self, inner):
        self.inner, self.name, self.batches = inner, inner.name, []

    def chat(self, conversations, max_new_tokens=64):
        self.batches.append([c[-1]["content"] for c in conversations])
        return self.inner.chat(conversations, max_new_tokens)


@pytest.fixture(scope="module")
def memory_model(tiny_base, tmp_path_factory):
    work = tmp_path_factory.mktemp("protocol-memory")
    train_adapter(tiny_base, [{"question": q, "answer": a} for q, a in FACTS], work / "adapter",
                  TrainConfig(learning_rate=1e-2, epochs=150, batch_size=4, lora_r=16))
    return LocalChatModel(fold_adapter(tiny_base, work / "adapter", work / "model"))


@pytest.fixture
def memory(memory_model):
    return CountingMemory(memory_model)


def executive_at(server, timeout_s: float = 30.0) -> OpenAIChatModel:
    return OpenAIChatModel(LLMSpec(backend="openai", model="scripted", base_url=server.base_url, timeout_s=timeout_s, max_retries=0))


def fact_number(prompt: str, text: str) -> int:
    return next(int(n) for n, line in re.findall(r"\[(\d+)\] (.*)", prompt) if text in line)


def staged_executive(narrow: dict):
    """Decompose into the first link, narrow with the scripted reply, gather the second link, synthesise from it."""

    def respond(request: dict) -> str:
        prompt = request["messages"][0]["content"]
        if "atomic clues" in prompt:
            return json.dumps({"clues": ["managed the Kesby plant", "birthplace"], "sub_questions": [MANAGER_Q]})
        if "Rank the candidate targets" in prompt:
            return json.dumps(narrow)
        if "that name Rafael Ondo" in prompt:
            return json.dumps({"sub_questions": [BIRTH_Q]})
        if "satisfies the most clues" in prompt and "Tarsby" in prompt:
            return json.dumps({"answer": "Tarsby", "facts_used": [fact_number(prompt, "Tarsby")], "clues_satisfied": 2})
        return json.dumps({"answer": "I don't know"})

    return respond


def test_three_stages_answer_a_two_hop_question_one_memory_batch_a_turn_with_sources(memory):
    with ScriptedOpenAI(staged_executive({"candidates": ["Rafael Ondo"], "confirmed": "Rafael Ondo", "sub_questions": []})) as server:
        result = Protocol(executive_at(server), memory, sources=SourceIndex(REFLECTIONS)).ask(QUESTION)
        requests = server.requests
    assert result.answer == "Tarsby" and result.target == "Rafael Ondo", result
    # decompose (question + first link), gather (second link): one batch each, the memory never sees the conversation
    assert memory.batches == [[QUESTION, MANAGER_Q], [BIRTH_Q]]
    assert result.memory_calls == 2 and [t.stage for t in result.trace] == ["decompose", "gather"]
    assert result.executive_calls == len(requests) == 4  # decompose, narrow (confirmed), gather, synthesise
    assert result.sources == ["ondo.md"] and result.facts_used[0]["reflection_ids"] == ["r2"], result.facts_used


def test_narrowing_exhausts_its_budget_and_retires_questions_that_keep_getting_i_dont_know(memory):
    narrow = {"candidates": ["Rafael Ondo", "Kesby"], "confirmed": None, "sub_questions": [FOUNDER_Q, MANAGER_Q]}
    config = ProtocolConfig(narrow_turns=3, retire_after=2, gather_turns=0)
    with ScriptedOpenAI(staged_executive(narrow)) as server:
        result = Protocol(executive_at(server), memory, config).ask(QUESTION)
        narrow_prompts = [r["messages"][0]["content"] for r in server.requests if "Rank the candidate" in r["messages"][0]["content"]]
    asked = [turn.sub_questions for turn in result.trace if turn.stage == "narrow"]
    assert asked == [[FOUNDER_Q, MANAGER_Q], [FOUNDER_Q, MANAGER_Q], [MANAGER_Q]]  # retired after two "I don't know"s
    assert result.retired == [FOUNDER_Q] and FOUNDER_Q in narrow_prompts[2].split("Retired questions")[1]
    assert any("budget of 3 turns exhausted" in note for note in result.notes)
    assert result.target == "Rafael Ondo" and result.memory_calls == 4


def test_malformed_json_is_repaired_or_asked_for_again(memory):
    def respond(request: dict):
        last = request["messages"][-1]["content"]
        if last == REPAIR:
            return json.dumps({"candidates": ["Rafael Ondo"], "confirmed": "Rafael Ondo"})
        if "Rank the candidate targets" in last:
            return "Rafael Ondo looks right to me."  # no JSON at all: one repair request follows
        if "atomic clues" in last:  # fenced, a trailing comma and single quotes: repaired without a new request
            return "Sure!\n```json\n{'clues': ['birthplace'], 'sub_questions': ['%s',],}\n```" % MANAGER_Q
        return staged_executive({})(request)

    with ScriptedOpenAI(respond) as server:
        result = Protocol(executive_at(server), memory).ask(QUESTION)
        repairs = [r for r in server.requests if r["messages"][-1]["content"] == REPAIR]
    assert result.answer == "Tarsby" and len(repairs) == 1 and len(repairs[0]["messages"]) == 3
    assert memory.batches[0] == [QUESTION, MANAGER_Q]
    assert any("no usable JSON (attempt 1)" in note for note in result.notes)
    assert result.executive_replies_parsed == result.executive_replies - 1  # only the narrowing reply without JSON


def test_an_executive_without_json_degrades_to_the_memory_asked_directly(memory):
    with ScriptedOpenAI(lambda request: "I would ask about the plant first, then about its manager.") as server:
        result = Protocol(executive_at(server), memory, ProtocolConfig(json_retries=1)).ask(MANAGER_Q)
    assert result.answer == "Rafael Ondo" and memory.batches == [[MANAGER_Q]]
    assert result.executive_calls == result.executive_replies == 2  # the request and one repair request, then no more
    assert result.executive_replies_parsed == 0
    assert any("asked the memory the question directly" in note for note in result.notes)


def test_a_slow_executive_times_out_and_the_question_ends_by_its_deadline(memory):
    config = ProtocolConfig(call_timeout_s=0.5, deadline_s=3.0)
    with ScriptedOpenAI(lambda request: {"sleep": 5, "content": "{}"}) as server:
        result = Protocol(executive_at(server), memory, config).ask(MANAGER_Q)
    assert result.answer == "Rafael Ondo" and result.elapsed_s < config.deadline_s
    assert any("CallTimeout" in note for note in result.notes)


def test_paraphrase_voting_sends_every_paraphrase_in_the_same_batch(memory):
    result = Protocol(None, memory, ProtocolConfig(mode="direct", paraphrases=3), sources=SourceIndex(REFLECTIONS)).ask(MANAGER_Q)
    assert len(memory.batches) == 1 and len(memory.batches[0]) == 3 and memory.batches[0][0] == MANAGER_Q
    assert result.memory_calls == 1 and result.executive_calls == 0
    assert result.answer == "Rafael Ondo" and result.sources == ["kesby.md"]


def test_single_turn_mode_decomposes_once_and_synthesises_once(memory):
    def respond(request: dict) -> str:
        prompt = request["messages"][0]["content"]
        if "atomic clues" in prompt:
            return json.dumps({"clues": [], "sub_questions": [MANAGER_Q, BIRTH_Q]})
        return json.dumps({"answer": "Tarsby", "facts_used": [fact_number(prompt, "Tarsby")]})

    with ScriptedOpenAI(respond) as server:
        result = Protocol(executive_at(server), memory, ProtocolConfig(mode="single"), sources=SourceIndex(REFLECTIONS)).ask(QUESTION)
    assert result.answer == "Tarsby" and result.executive_calls == 2 and memory.batches == [[QUESTION, MANAGER_Q, BIRTH_Q]]
    assert result.sources == ["ondo.md"]


def test_json_repair_closes_a_reply_cut_by_the_token_limit():
    assert parse_json_reply('{"sub_questions": ["Who is X?", "Where', dict) == {"sub_questions": ["Who is X?", "Where"]}
    assert parse_json_reply("no json here", dict) is None


def test_a_memory_that_times_out_leaves_the_question_unanswered_without_retiring_it():
    config = ProtocolConfig(mode="direct", call_timeout_s=0.5, retire_after=1)
    with ScriptedOpenAI(lambda request: {"sleep": 3, "content": "Rafael Ondo"}) as server:
        result = Protocol(None, executive_at(server), config).ask(MANAGER_Q)
    assert result.answer == "I don't know" and result.retired == [] and result.memory_calls == 1
    assert any("memory call failed in direct: CallTimeout" in note for note in result.notes)


class AnsweringMemory:
    """A memory that knows an answer to everything, so every stage has facts to work with."""

    name = "answering"

    def chat(self, conversations, max_new_tokens=64):
        return ["Rafael Ondo manages the Kesby plant." for _ in conversations]


def test_a_tiny_local_executive_runs_all_three_stages_and_every_reply_parses(tiny_base):
    """A random 2-layer model writes no JSON by itself; decoding under each stage's schema makes every reply parse, so
    the protocol never takes its degraded path."""
    executive = LocalChatModel(tiny_base)
    config = ProtocolConfig(narrow_turns=1, executive_max_new_tokens=64)  # a budget the replies must close within
    result = Protocol(executive, AnsweringMemory(), config).ask(QUESTION)
    degraded = ("no usable JSON", "no decomposition", "narrowing stopped", "no usable synthesis", "failed")
    assert not [note for note in result.notes if any(d in note for d in degraded)], result.notes
    stages = [turn.stage for turn in result.trace]
    assert stages[0] == "decompose" and stages[-1] == "gather" and result.target, result
    assert result.executive_calls == result.executive_replies_parsed == 4  # decompose, narrow, gather, synthesise: each used at the first try
    assert result.answer.strip() and result.answer != "I don't know"
