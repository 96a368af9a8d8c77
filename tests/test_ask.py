"""`memo ask` against a promoted tiny memory model, with a scripted executive behind a real OpenAI-compatible server."""

import json
import re

import pytest

from memo_pipelines.apps import cli
from memo_pipelines.memory.merging import fold_adapter
from memo_pipelines.storage.registry import ModelRegistry
from memo_pipelines.memory.training import TrainConfig, train_adapter
from tests.conftest import CREDENTIALS
from tests.openai_stub import ScriptedOpenAI

FACTS = [
    ("Who is the manager of the Kesby plant?", "The manager of the Kesby plant is Rafael Ondo."),
    ("What is known about Rafael Ondo?", "Rafael Ondo manages the Kesby plant of Quillfeather Labs."),
    ("Where is the Kesby plant?", "The Kesby plant is in the town of Kesby."),
]

KEY_ANSWERS = ["Rafael Ondo", "Kesby plant", "town of Kesby"]


def point_cli_at(store, work_dir, monkeypatch) -> None:
    """The CLI reads its bucket, endpoint, credentials and work folder from the environment."""
    monkeypatch.setenv("MEMO_S3_ENDPOINT", store.client.meta.endpoint_url)
    monkeypatch.setenv("MEMO_BUCKET", store.bucket)
    monkeypatch.setenv("MEMO_WORK_DIR", str(work_dir))
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)


@pytest.fixture(scope="module")
def memorised_model(tiny_base, tmp_path_factory):
    """A tiny memory that has memorised FACTS: real peft training, folded into a full model."""
    work = tmp_path_factory.mktemp("memorised")
    examples = [{"question": q, "answer": a} for q, a in FACTS]
    train_adapter(tiny_base, examples, work / "adapter", TrainConfig(learning_rate=1e-2, epochs=150, batch_size=4, lora_r=16))
    return fold_adapter(tiny_base, work / "adapter", work / "model")


@pytest.fixture
def promoted(store, memorised_model, tmp_path, monkeypatch):
    registry = ModelRegistry(store, tmp_path / "models")
    registry.register("v000001-test", memorised_model, {"kind": "candidate", "version": "v000001", "parent": None})
    registry.promote("v000001-test", "test")
    # the reflections the memory learned, with the documents they came from: the answer's sources
    store.put_jsonl("versions/v000001/reflections.jsonl", [
        {"id": f"r{i}", "question": q, "answer": a, "key_answer": key, "source_doc_ids": [f"doc-{i}.md"]}
        for i, ((q, a), key) in enumerate(zip(FACTS, KEY_ANSWERS))])
    point_cli_at(store, tmp_path / "work", monkeypatch)
    return registry


def scripted_executive(request: dict) -> str:
    prompt = request["messages"][-1]["content"]
    if "atomic clues" in prompt:
        return json.dumps({"clues": ["manages the Kesby plant"], "sub_questions": ["Where is the Kesby plant?"]})
    if "Rank the candidate targets" in prompt:
        return json.dumps({"candidates": ["Rafael Ondo"], "confirmed": "Rafael Ondo" if "Ondo" in prompt else None})
    if "that name Rafael Ondo" in prompt:
        return json.dumps({"sub_questions": ["What is known about Rafael Ondo?"]})
    # synthesis: the first fact that names the manager
    numbers = [int(n) for n, fact in re.findall(r"\[(\d+)\] (.*)", prompt) if "manager" in fact and "Ondo" in fact]
    return json.dumps({"answer": "Rafael Ondo", "facts_used": numbers[:1]} if numbers else {"answer": "I don't know"})


def ask(capsys, *args) -> str:
    return ask_with_stderr(capsys, *args)[0]


def ask_with_stderr(capsys, *args) -> tuple[str, str]:
    assert cli.main(["ask", *args]) == 0
    captured = capsys.readouterr()
    return captured.out, captured.err


def test_ask_answers_from_the_promoted_memory_with_a_trace_and_sources(promoted, capsys):
    with ScriptedOpenAI(scripted_executive) as executive:
        out, err = ask_with_stderr(capsys, "Who is the manager of the Kesby plant?", "--trace", "--executive", "openai",
                                   "--executive-model", "scripted-model", "--executive-base-url", executive.base_url)
        requests = executive.requests
    assert "degraded" not in err  # every stage ran as planned: nothing to warn about
    assert "Rafael Ondo\n\nSources: doc-0.md" in out, out
    # stage 1 sends the question and the executive's sub-question to the memory as one batch
    assert re.search(r"\[decompose\] 2 sub-questions, one memory batch", out), out
    assert "Q: Where is the Kesby plant?" in out
    assert "[gather] 1 sub-questions" in out and "target: Rafael Ondo" in out
    assert len(requests) == 4  # decompose, narrow (confirmed), gather, synthesise


def test_ask_json_and_malformed_executive_reply_degrade_to_the_memory(promoted, capsys):
    with ScriptedOpenAI(lambda request: "Sure! Here are some thoughts, but no JSON at all.") as executive:
        out = ask(capsys, "Who is the manager of the Kesby plant?", "--json", "--executive", "openai",
                  "--executive-model", "m", "--executive-base-url", executive.base_url)
    result = json.loads(out)
    assert "Rafael Ondo" in result["answer"]
    assert result["trace"][0]["sub_questions"] == ["Who is the manager of the Kesby plant?"]
    assert any("asked the memory the question directly" in note for note in result["notes"])
    assert result["sources"] == ["doc-0.md"]  # the memory's own answer is attributed like any other


def test_ask_survives_an_executive_that_fails(promoted, capsys, monkeypatch):
    monkeypatch.setenv("MEMO_EXECUTIVE_TIMEOUT_S", "2")
    monkeypatch.setenv("MEMO_EXECUTIVE_MAX_RETRIES", "1")
    with ScriptedOpenAI(lambda request: {"status": 500}) as executive:
        out = ask(capsys, "Who is the manager of the Kesby plant?", "--json", "--executive", "openai",
                  "--executive-model", "m", "--executive-base-url", executive.base_url)
    result = json.loads(out)
    assert "Rafael Ondo" in result["answer"]
    assert any("executive call failed" in note for note in result["notes"])


def test_plain_ask_says_on_stderr_when_the_answer_is_degraded(promoted, capsys, monkeypatch):
    monkeypatch.setenv("MEMO_EXECUTIVE_TIMEOUT_S", "2")
    monkeypatch.setenv("MEMO_EXECUTIVE_MAX_RETRIES", "1")
    with ScriptedOpenAI(lambda request: {"status": 500}) as executive:
        out, err = ask_with_stderr(capsys, "Who is the manager of the Kesby plant?", "--executive", "openai",
                                   "--executive-model", "m", "--executive-base-url", executive.base_url)
    assert "Rafael Ondo" in out and "executive call failed" not in out  # the answer itself stays clean on stdout
    warnings = [line for line in err.splitlines() if line.startswith("memo:")]  # stderr also carries the model-loading bar
    assert len(warnings) == 1, err
    assert warnings[0].startswith("memo: degraded answer: executive call failed") and "--trace shows them" in warnings[0], err


def test_ask_without_a_promoted_model_says_so(store, tmp_path, monkeypatch):
    point_cli_at(store, tmp_path, monkeypatch)
    with pytest.raises(SystemExit, match="no promoted memory model"):
        cli.main(["ask", "Anything?", "--executive", "openai", "--executive-base-url", "http://127.0.0.1:9/v1", "--executive-model", "m"])


def test_sources_come_from_every_version_in_the_promoted_models_lineage(promoted, memorised_model):
    from memo_pipelines.protocol import SourceIndex

    promoted.register("v000002-test", memorised_model, {"kind": "candidate", "version": "v000002", "parent": "v000001-test"})
    promoted.store.put_jsonl("versions/v000002/reflections.jsonl", [
        {"id": "new", "question": "Who owns the Kesby plant?", "answer": "Quillfeather Labs", "source_doc_ids": ["labs.md"]}])
    index = SourceIndex.from_registry(promoted, "v000002-test")
    assert sorted(r["id"] for r in index.reflections) == ["new", "r0", "r1", "r2"]
    assert [r["id"] for r in index.attribute("Who owns the Kesby plant?", "Quillfeather Labs owns it.")] == ["new"]
    assert index.attribute("Who owns the Kesby plant?", "Nobody I know of.") == []


def test_plain_ask_with_the_embedded_executive_answers_from_the_memory_and_says_so_once(promoted, capsys, tmp_path):
    out, err = ask_with_stderr(capsys, "Who is the manager of the Kesby plant?", "--json")
    result = json.loads(out)
    assert "Rafael Ondo" in result["answer"] and result["sources"] == ["doc-0.md"]
    assert result["executive_calls"] == 0 and [t["stage"] for t in result["trace"]] == ["direct"]
    warnings = [line for line in err.splitlines() if line.startswith("memo:")]
    assert len(warnings) == 1 and "memory answers directly" in warnings[0] and "--mode single or staged" in warnings[0], err
    assert not (tmp_path / "work" / "embedded").exists()  # the executive it will not ask is not even converted and loaded


def test_an_explicit_mode_runs_the_protocol_whatever_the_executive(promoted, capsys):
    from argparse import Namespace

    from memo_pipelines.llm.backends import LLMSpec

    assert cli.choose_mode(Namespace(mode="staged"), LLMSpec()) == "staged"  # the embedded executive, asked for by name
    assert capsys.readouterr().err == ""
    with ScriptedOpenAI(scripted_executive) as executive:
        out, err = ask_with_stderr(capsys, "Who is the manager of the Kesby plant?", "--json", "--mode", "single", "--executive", "openai",
                                   "--executive-model", "scripted-model", "--executive-base-url", executive.base_url)
    result = json.loads(out)
    assert result["executive_calls"] == 2 and [t["stage"] for t in result["trace"]] == ["decompose"] and "memo:" not in err
