"""The in-process model: replies stay with their prompts though batches are grouped by length; the device is chosen
once, clearly, and a device asked for that is not there is an error, not a silent CPU run."""

import pytest

from memo_pipelines.llm.backends import LocalChatModel, inference_device

PROMPTS = [
    "Kesby",
    "The Kesby plant employs",
    "Who manages the plant at Kesby now",
    "Harbour Lane is a street in the town of",
    "Q: What does the Kesby plant make? A:",
    "Ivo",
    "The river runs through the old town and then",
]


def test_replies_stay_with_their_prompts_when_batches_are_grouped_by_length(tiny_base):
    model = LocalChatModel(tiny_base, batch_size=3)
    lengths = [len(model.tokenizer(p, add_special_tokens=False)["input_ids"]) for p in PROMPTS]
    assert len(set(lengths)) == len(PROMPTS), "distinct lengths make the length groups the same whatever the order asked"
    forward = model.complete(PROMPTS, max_new_tokens=6)
    backward = model.complete(PROMPTS[::-1], max_new_tokens=6)
    assert backward[::-1] == forward
    assert len(set(forward)) > 1, "a random tiny model still continues different prompts differently"
    # every reply is the one its prompt gets in the same length group: asked again alone with its group it does not move
    group = sorted(range(len(PROMPTS)), key=lambda i: -lengths[i])[:3]
    assert model.complete([PROMPTS[i] for i in group], max_new_tokens=6) == [forward[i] for i in group]


def test_the_cpu_runs_float32_and_a_missing_gpu_is_a_clear_error(monkeypatch):
    import torch

    assert inference_device("cpu") == ("cpu", "float32")
    if torch.cuda.is_available():
        device, dtype = inference_device("auto")
        assert device == "cuda" and dtype in ("bfloat16", "float16")
    else:
        assert inference_device("auto") == ("cpu", "float32")
        monkeypatch.setenv("MEMO_DEVICE", "cuda")
        with pytest.raises(RuntimeError, match="no CUDA device"):
            inference_device()
