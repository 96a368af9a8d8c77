"""`memo ask` against a promoted tiny memory model, with a scripted executive behind a real OpenAI-compatible server."""

import json
import re

import pytest

from memo_pipelines import cli
from memo_pipelines.merging import fold_adapter
from memo_pipelines.registry import ModelRegistry
from memo_pipelines.training import TrainConfig, train_adapter
from tests.conftest import CREDENTIALS
from tests.openai_stub import ScriptedOpenAI

FACTS = [
    ("Who is the manager of the Kesby plant?", "The manager of the Kesby plant is Rafael Ondo."),
    ("What is known about Rafael Ondo?", "Rafael Ondo manages the Kesby plant of Quillfeather Labs."),
    ("Where is the Kesby plant?", "The Kesby plant is in the town of Kesby."),
]


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
    point_cli_at(store, tmp_path / "work", monkeypatch)
    return registry


def scripted_executive(request: dict) -> str:
    prompt = request["messages"][-1]["content"]
    if prompt.startswith("Split the question"):
        return json.dumps(["Where is the Kesby plant?"])
    if "Candidates:" in prompt:
        candidates = json.loads(prompt.split("Candidates:")[1].split("\n")[0])
        return json.dumps({"entity": candidates[0]})
    # synthesis: answer with the memory's fact that names a person
    facts = [line for line in prompt.splitlines() if line.startswith("- ")]
    named = [f for f in facts if "Ondo" in f]
    return json.dumps({"answer": named[0].split("?", 1)[1].strip() if named else "I don't know"})


def ask(capsys, *args) -> str:
    assert cli.main(["ask", *args]) == 0
    return capsys.readouterr().out


def test_ask_answers_from_the_promoted_memory_with_a_trace(promoted, capsys):
    with ScriptedOpenAI(scripted_executive) as executive:
        out = ask(capsys, "Who is the manager of the Kesby plant?", "--trace", "--executive", "openai",
                  "--executive-model", "scripted-model", "--executive-base-url", executive.base_url)
        requests = executive.requests
    assert out.strip().splitlines()[-1].find("Rafael Ondo") >= 0, out
    # stage 1 sends the question and the executive's sub-question to the memory as one batch
    assert re.search(r"\[decompose\] 2 sub-questions, one memory batch", out), out
    assert "Q: Where is the Kesby plant?" in out
    assert len(requests) == 3  # decompose, pick, synthesise


def test_ask_json_and_malformed_executive_reply_degrade_to_the_memory(promoted, capsys):
    with ScriptedOpenAI(lambda request: "Sure! Here are some thoughts, but no JSON at all.") as executive:
        out = ask(capsys, "Who is the manager of the Kesby plant?", "--json", "--executive", "openai",
                  "--executive-model", "m", "--executive-base-url", executive.base_url)
    result = json.loads(out)
    assert "Rafael Ondo" in result["answer"]
    assert result["trace"][0]["sub_questions"] == ["Who is the manager of the Kesby plant?"]
    assert any("not a JSON list" in note for note in result["notes"])


def test_ask_survives_an_executive_that_fails(promoted, capsys, monkeypatch):
    monkeypatch.setenv("MEMO_EXECUTIVE_TIMEOUT_S", "2")
    monkeypatch.setenv("MEMO_EXECUTIVE_MAX_RETRIES", "1")
    with ScriptedOpenAI(lambda request: {"status": 500}) as executive:
        out = ask(capsys, "Who is the manager of the Kesby plant?", "--json", "--executive", "openai",
                  "--executive-model", "m", "--executive-base-url", executive.base_url)
    result = json.loads(out)
    assert "Rafael Ondo" in result["answer"]
    assert any("executive call failed" in note for note in result["notes"])


def test_ask_without_a_promoted_model_says_so(store, tmp_path, monkeypatch):
    point_cli_at(store, tmp_path, monkeypatch)
    with pytest.raises(SystemExit, match="no promoted memory model"):
        cli.main(["ask", "Anything?", "--executive", "openai", "--executive-base-url", "http://127.0.0.1:9/v1", "--executive-model", "m"])
