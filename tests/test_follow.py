"""Following the promoted pointer: a new memory is loaded beside the old one, swapped in between requests, and the
old one freed once its last request is done; a rollback is followed the same way; a model that fails to load leaves
the old one serving. Real SeaweedFS, real registry, tiny real models that each learned a different answer."""

import gc
import json
import weakref
from collections import Counter

import pytest
import torch

from memo_pipelines.apps.batching import RequestModel, Tally
from memo_pipelines.apps.deployments import local_loader
from memo_pipelines.apps.follow import ModelSwitch, PointerWatcher
from memo_pipelines.qa import memory_messages
from memo_pipelines.storage import layout
from memo_pipelines.storage.registry import ModelRegistry

QUESTION = "Who manages the Kesby plant?"
ANSWER_A, ANSWER_B = "Rafael Ondo manages it.", "Ines Halloran manages it."


def teach(base_dir, out_dir, answer: str, steps: int = 40):
    """A copy of the tiny base that answers QUESTION (and, having seen nothing else, any question) with `answer`:
    full fine-tuning on the one exchange, in the memory's own prompt format; about a second on one core."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # two shared cores: one thread is many times faster than two fighting
    try:
        torch.manual_seed(0)
        tokenizer = AutoTokenizer.from_pretrained(base_dir)
        model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
        prompt = tokenizer(tokenizer.apply_chat_template(memory_messages(QUESTION), add_generation_prompt=True, tokenize=False),
                           add_special_tokens=False).input_ids
        target = tokenizer(answer + tokenizer.eos_token, add_special_tokens=False).input_ids
        input_ids, labels = torch.tensor([prompt + target]), torch.tensor([[-100] * len(prompt) + target])
        optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
        model.train()
        for _ in range(steps):
            model(input_ids=input_ids, labels=labels).loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        model.save_pretrained(out_dir)
        tokenizer.save_pretrained(out_dir)
    finally:
        torch.set_num_threads(threads)
    return out_dir


@pytest.fixture(scope="session")
def two_memories(tiny_base, tmp_path_factory):
    """(model A, model B): two memories that give different answers to the same question."""
    root = tmp_path_factory.mktemp("memories")
    return teach(tiny_base, root / "a", ANSWER_A), teach(tiny_base, root / "b", ANSWER_B)


def register_two(registry, two_memories) -> None:
    model_a, model_b = two_memories
    registry.register("v000001-a", model_a, {"kind": "candidate", "version": "v000001", "parent": None})
    registry.register("v000002-b", model_b, {"kind": "candidate", "version": "v000002", "parent": "v000001-a"})
    registry.promote("v000001-a", "v000001 passed its gates")


def ask(deployment) -> str:
    """The deployment's memory answer to QUESTION, asked the way a request's protocol asks it."""
    return RequestModel(deployment.memory, "memory", Counter()).chat([memory_messages(QUESTION)], max_new_tokens=24)[0]


@pytest.fixture
def following(store, two_memories, tmp_path):
    """(registry, switch, watcher) of a server-to-be serving model A, its watcher polled by hand."""
    registry = ModelRegistry(store, tmp_path / "models")
    register_two(registry, two_memories)
    pointer, etag = store.get_json_versioned(layout.PROMOTED_POINTER)
    load = local_loader(registry, Tally(), window_s=0)
    switch = ModelSwitch(load(pointer), log=lambda message: None)
    return registry, switch, PointerWatcher(store, switch, load, etag, interval_s=0.1)


def count_requests(store, operation: str) -> list:
    seen = []
    store.client.meta.events.register(f"before-send.s3.{operation}", lambda request, **_: seen.append(request.url))
    return seen


def test_a_promotion_reaches_new_requests_while_the_request_in_flight_finishes_on_its_model(following):
    registry, switch, watcher = following
    assert ask(switch.current) == ANSWER_A
    gets = count_requests(registry.store, "GetObject")
    assert watcher.check() is False and watcher.check() is False
    assert gets == []  # an unmoved pointer costs a HEAD per poll, nothing more

    with switch.acquire() as in_flight:
        old_model = weakref.ref(in_flight.memory.model.model)
        registry.promote("v000002-b", "v000002 passed its gates")
        assert watcher.check() is True
        assert switch.current.model_id == "v000002-b" and ask(switch.current) == ANSWER_B
        assert in_flight.model_id == "v000001-a" and ask(in_flight) == ANSWER_A  # loaded beside the new one, still answering
        assert [(d["model_id"], d["in_flight"]) for d in switch.loaded()] == [("v000002-b", 0), ("v000001-a", 1)]
        assert switch.current.promoted_at == registry.pointer()["history"][-1]["at"]
    gc.collect()
    assert [d["model_id"] for d in switch.loaded()] == ["v000002-b"]
    assert old_model() is None  # its last request done, the old model's weights are gone from memory


def test_a_rollback_is_followed_like_a_promotion(following):
    registry, switch, watcher = following
    registry.promote("v000002-b", "v000002 passed its gates")
    assert watcher.check() and ask(switch.current) == ANSWER_B
    registry.rollback("answers got worse")
    assert watcher.check() is True
    assert switch.current.model_id == "v000001-a" and switch.current.reason == "answers got worse"
    assert ask(switch.current) == ANSWER_A
    assert [d["model_id"] for d in switch.loaded()] == ["v000001-a"]


def test_a_model_that_fails_to_load_leaves_the_old_one_serving_and_a_later_move_is_followed(following, tmp_path):
    registry, switch, watcher = following
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text(json.dumps({"model_type": "no-such-architecture"}))
    registry.register("v000003-broken", broken, {"kind": "candidate", "version": "v000003", "parent": "v000001-a"})
    registry.promote("v000003-broken", "promoted by hand")

    assert watcher.check() is False
    assert "v000003-broken" in watcher.error and switch.current.model_id == "v000001-a" and ask(switch.current) == ANSWER_A
    assert watcher.check() is False  # backing off: the broken model is not reloaded on every poll
    registry.promote("v000002-b", "fixed")
    assert watcher.check() is True and switch.current.model_id == "v000002-b" and watcher.error is None


def adapter_of(base_dir, out_dir, seed: int):
    """A real peft LoRA adapter of the tiny base (untrained: only its format matters to the endpoint that loads it)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base_dir), LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    model.save_pretrained(out_dir)
    return out_dir


def test_lora_adapters_follow_the_pointer_on_an_openai_compatible_endpoint(store, tiny_base, tmp_path):
    """vLLM's runtime adapter routes, scripted: the promoted adapter is loaded by name and answers; the replaced one
    is unloaded when its last request is done; a rollback loads the old one again; a full model is refused."""
    from memo_pipelines.apps.deployments import lora_loader
    from memo_pipelines.llm.backends import LLMSpec
    from tests.openai_stub import ScriptedOpenAI

    registry = ModelRegistry(store, tmp_path / "models")
    for n, model_id in enumerate(["v000001-a", "v000002-b"]):
        registry.register(model_id, adapter_of(tiny_base, tmp_path / model_id, n), {"kind": "candidate", "version": model_id[:7], "parent": None})
    registry.register("v000003-full", tiny_base, {"kind": "candidate", "version": "v000003", "parent": None})
    registry.promote("v000001-a", "v000001 passed its gates")
    with ScriptedOpenAI(lambda request: f"answered by {request['model']}", model="base-model") as endpoint:
        load = lora_loader(registry, Tally(), memory_spec=LLMSpec("openai", "", endpoint.base_url, max_retries=0), lora_path="/adapters/{model_id}")
        pointer, etag = store.get_json_versioned(layout.PROMOTED_POINTER)
        switch = ModelSwitch(load(pointer), log=lambda message: None)
        watcher = PointerWatcher(store, switch, load, etag, interval_s=0.1)
        assert endpoint.adapters == {"v000001-a": "/adapters/v000001-a"}
        assert ask(switch.current) == "answered by v000001-a"

        with switch.acquire() as in_flight:
            registry.promote("v000002-b", "v000002 passed its gates")
            assert watcher.check() is True and ask(switch.current) == "answered by v000002-b"
            assert sorted(endpoint.adapters) == ["v000001-a", "v000002-b"] and ask(in_flight) == "answered by v000001-a"
        assert sorted(endpoint.adapters) == ["v000002-b"]

        registry.rollback("answers got worse")
        assert watcher.check() is True and ask(switch.current) == "answered by v000001-a" and sorted(endpoint.adapters) == ["v000001-a"]
        assert [call for call, _ in endpoint.adapter_calls] == ["load_lora_adapter", "load_lora_adapter", "unload_lora_adapter",
                                                                "load_lora_adapter", "unload_lora_adapter"]

        registry.promote("v000003-full", "promoted by hand")
        assert watcher.check() is False and "not a LoRA adapter" in watcher.error and switch.current.model_id == "v000001-a"
