"""Memory training on a tiny real model: what changes, what stays frozen, and resuming a killed run."""

import json
import os
import random
import signal
import subprocess
import sys
from dataclasses import asdict, replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from memo_pipelines.memory.training import PROGRESS_PREFIX, TrainConfig, latest_checkpoint, train_adapter

EXAMPLES = [
    {"question": "Who is the manager of the Kesby plant?", "answer": "The manager of the Kesby plant is Rafael Ondo."},
    {"question": "When did the Kesby plant open?", "answer": "The Kesby plant opened in 2019 beside the river Olm."},
    {"question": "Who designed the Wren Building?", "answer": "The Wren Building was designed by the architect Lotte Brask."},
]
CONFIG = TrainConfig(learning_rate=5e-3, epochs=40, batch_size=2, checkpoint_every=10, log_every=1)


def test_training_changes_the_adapter_and_leaves_the_base_frozen(tiny_base, tmp_path):
    base_before = load_file(str(Path(tiny_base) / "model.safetensors"))
    figures = train_adapter(tiny_base, EXAMPLES, tmp_path / "adapter", TrainConfig(learning_rate=5e-3, epochs=10, batch_size=2))
    adapter = load_file(str(tmp_path / "adapter" / "adapter_model.safetensors"))
    assert json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())["r"] == 16
    # peft initialises lora_B to zero: a trained adapter has moved it
    assert any(k.endswith("lora_B.weight") and v.abs().sum() > 0 for k, v in adapter.items())
    assert figures["loss_curve"][-1] < figures["loss_curve"][0]
    base_after = load_file(str(Path(tiny_base) / "model.safetensors"))
    assert all(torch.equal(base_before[k], base_after[k]) for k in base_before)


def run_training(spec_path: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "memo_pipelines.memory.training", str(spec_path)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})


def write_spec(tmp_path: Path, name: str, base: Path, checkpoint_dir: Path, config: TrainConfig = CONFIG) -> Path:
    (tmp_path / "examples.jsonl").write_text("".join(json.dumps(e) + "\n" for e in EXAMPLES))
    spec = {"base_dir": str(base), "out_dir": str(tmp_path / name), "examples_path": str(tmp_path / "examples.jsonl"),
            "config": asdict(config), "checkpoint_dir": str(checkpoint_dir)}
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(spec))
    return path


def test_a_killed_run_resumes_from_its_checkpoint_and_matches_an_uninterrupted_run(tiny_base, tmp_path):
    # under a decaying learning rate, so the schedule's position must come back with the weights and the optimizer
    config = replace(CONFIG, lr_schedule="linear")
    checkpoint = tmp_path / "checkpoint"
    killed = run_training(write_spec(tmp_path, "killed", tiny_base, checkpoint, config))
    for line in killed.stdout:  # kill it, like a pre-emption, once it has passed a checkpoint
        if line.startswith(PROGRESS_PREFIX) and json.loads(line[len(PROGRESS_PREFIX):]).get("step", 0) >= 25:
            killed.send_signal(signal.SIGKILL)
            break
    killed.wait()
    assert killed.returncode == -signal.SIGKILL
    # the child may have run a little past step 25 before the signal landed: any checkpoint short of the end will do
    latest = latest_checkpoint(checkpoint)  # accelerate's save_state folder with our counters, the frozen base left out
    saved = json.loads((latest / "counters.json").read_text())["step"]
    assert saved % CONFIG.checkpoint_every == 0 and 20 <= saved < 80
    assert (latest / "model.safetensors").stat().st_size < (Path(tiny_base) / "model.safetensors").stat().st_size / 2
    assert len(list(checkpoint.glob("step-*"))) <= 2  # older checkpoints are removed

    resumed = run_training(write_spec(tmp_path, "resumed", tiny_base, checkpoint, config))
    events = [json.loads(line[len(PROGRESS_PREFIX):]) for line in resumed.stdout if line.startswith(PROGRESS_PREFIX)]
    assert resumed.wait() == 0
    assert events[0] == {"resumed_from_step": saved, "total_steps": 80}
    assert events[1]["step"] == saved + 1
    assert [e["checkpoint"]["step"] for e in events if "checkpoint" in e] == list(range(saved + 10, 80, 10))

    train_adapter(tiny_base, EXAMPLES, tmp_path / "uninterrupted", config)
    resumed_weights = load_file(str(tmp_path / "resumed" / "adapter_model.safetensors"))
    reference = load_file(str(tmp_path / "uninterrupted" / "adapter_model.safetensors"))
    assert resumed_weights.keys() == reference.keys()
    assert all(torch.allclose(resumed_weights[k], reference[k], atol=1e-6) for k in reference)


def test_packing_gives_the_padded_loss_with_fewer_tokens(tiny_base):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from memo_pipelines.memory.training import collate, encode_example

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_base))
    model = AutoModelForCausalLM.from_pretrained(str(tiny_base))
    batch = [encode_example(tokenizer, e["question"], e["answer"], 160) for e in EXAMPLES] + [encode_example(tokenizer, "Who?", "Ondo.", 160)]

    def loss(pack_length: int):
        input_ids, labels, inputs, real, computed = collate(batch, tokenizer.pad_token_id, pack_length)
        hidden = model.model(input_ids=input_ids, **inputs).last_hidden_state
        targets = labels[:, 1:]
        return torch.nn.functional.cross_entropy(model.lm_head(hidden[:, :-1][targets != -100]), targets[targets != -100]), real, computed

    padded, real, padded_tokens = loss(0)
    packed, real_packed, packed_tokens = loss(1024)
    assert real == real_packed and packed_tokens == real < padded_tokens
    assert torch.allclose(padded, packed, atol=1e-5)


def test_length_grouped_batches_take_every_example_once_with_less_padding():
    from memo_pipelines.memory.training import epoch_order

    # short facts beside sentence-long answers, as a version's rule rows sit beside its document rows
    rng = random.Random(3)
    encoded = [([1] * rng.choice([30, 40, 120, 180]), []) for _ in range(400)]
    grouped, shuffled = TrainConfig(batch_size=8, group_by_length=True), TrainConfig(batch_size=8)

    def computed_tokens(order):
        return sum(8 * max(len(encoded[i][0]) for i in order[b : b + 8]) for b in range(0, len(order), 8))

    order = epoch_order(encoded, grouped, 0)
    assert sorted(order) == list(range(400))  # an epoch is still one pass over every example
    assert order == epoch_order(encoded, grouped, 0) != epoch_order(encoded, grouped, 1)  # a resumed run takes the same batches
    assert computed_tokens(order) < 0.8 * computed_tokens(epoch_order(encoded, shuffled, 0))


def test_full_fine_tuning_saves_a_whole_model_that_becomes_the_candidate(tiny_base, tmp_path):
    from memo_pipelines.memory.merging import MergeConfig, merge_deltas

    config = TrainConfig(method="full", learning_rate=1e-3, epochs=5, batch_size=2)
    train_adapter(tiny_base, EXAMPLES, tmp_path / "full", config)
    assert not (tmp_path / "full" / "adapter_config.json").exists()
    base = load_file(str(Path(tiny_base) / "model.safetensors"))
    tuned = load_file(str(tmp_path / "full" / "model.safetensors"))
    assert any(not torch.equal(base[k], tuned[k]) for k in base if k in tuned)
    merge_deltas(tiny_base, [tmp_path / "full"], tmp_path / "merged", MergeConfig(method="task_arithmetic"), tmp_path / "scratch")
    merged = load_file(str(tmp_path / "merged" / "model.safetensors"))
    # one delta is the candidate as it was trained: the fine-tuned weights
    assert all(torch.allclose(merged[k], tuned[k], atol=1e-5) for k in merged if k in tuned)


def test_accelerate_launcher_runs_the_same_training_out_of_process(tiny_base, tmp_path):
    from memo_pipelines.memory.training import run_training_subprocess

    (tmp_path / "examples.jsonl").write_text("".join(json.dumps(e) + "\n" for e in EXAMPLES))
    config = TrainConfig(learning_rate=5e-3, epochs=4, batch_size=2, log_every=1)
    spec = {"base_dir": str(tiny_base), "out_dir": str(tmp_path / "adapter"), "examples_path": str(tmp_path / "examples.jsonl"),
            "config": asdict(config), "launcher": "accelerate", "accelerate_config": str(Path(__file__).parents[1] / "configs" / "accelerate_cpu.yaml")}
    steps = []
    figures = run_training_subprocess(spec, tmp_path, lambda event: steps.append(event["step"]), lambda text: None)
    assert steps == list(range(1, 9)) and figures["steps"] == 8
    assert (tmp_path / "adapter" / "adapter_model.safetensors").exists()


def test_a_step_that_stops_mid_training_leaves_no_training_process_behind(tiny_base, tmp_path):
    from memo_pipelines.memory.training import run_training_subprocess

    (tmp_path / "examples.jsonl").write_text("".join(json.dumps(e) + "\n" for e in EXAMPLES))
    spec = {"base_dir": str(tiny_base), "out_dir": str(tmp_path / "adapter"), "examples_path": str(tmp_path / "examples.jsonl"),
            "config": asdict(TrainConfig(learning_rate=5e-3, epochs=50, batch_size=2, log_every=1))}

    def lose_the_lease(event):  # what a failed lease renewal does inside the progress callback
        raise RuntimeError("lease lost")

    with pytest.raises(RuntimeError, match="lease lost"):
        run_training_subprocess(spec, tmp_path, lose_the_lease, lambda text: None)
    spec_path = str(tmp_path / "train_spec.json")
    running = [p for p in Path("/proc").iterdir() if p.name.isdigit() and spec_path in _cmdline(p)]
    assert running == []
    assert not (tmp_path / "adapter" / "adapter_model.safetensors").exists()


def _cmdline(proc: Path) -> str:
    try:
        return (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


LONG_ANSWER = ("The Kesby plant is the factory of Quillfeather Labs in the town of Kesby. It opened in 2019 beside the river Olm and "
               "employs 340 people. Its manager is Rafael Ondo, and it builds the Tern cells that go into the Petrel battery.")


def test_examples_are_trained_at_their_own_length_and_none_loses_its_end(tiny_base, tmp_path):
    examples = EXAMPLES + [{"question": "What is known about the Kesby plant?", "answer": LONG_ANSWER}]
    figures = train_adapter(tiny_base, examples, tmp_path / "adapter", TrainConfig(learning_rate=5e-3, epochs=2, batch_size=2))
    length = figures["length"]
    assert length["longest_example"] > 160  # the old fixed length cut this example's end token
    assert length["max_length"] == length["longest_example"] and length["truncated_examples"] == length["dropped_examples"] == 0
    assert figures["examples"] == len(examples)
    assert json.loads((tmp_path / "adapter" / "training.json").read_text())["length"] == length


def test_examples_past_the_length_cap_are_counted_and_too_many_refuse_the_training(tiny_base, tmp_path):
    from transformers import AutoTokenizer

    from memo_pipelines.memory.training import TrainingRefused, encode_full, run_training_subprocess

    cap = 140
    short = [{"question": f"Who manages plant {i}?", "answer": f"Plant {i} is managed by Rafael Ondo."} for i in range(38)]
    long_answer = {"question": "What is known about the Kesby plant?", "answer": LONG_ANSWER}
    long_question = {"question": "Which plant " + " and ".join(f"opened in {1990 + i}" for i in range(12)) + "?", "answer": "Kesby."}
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_base))
    length = lambda e: len(encode_full(tokenizer, e["question"], e["answer"])[0])  # noqa: E731
    prompt_length = lambda e: encode_full(tokenizer, e["question"], e["answer"])[1].count(-100)  # noqa: E731
    assert max(map(length, short)) <= cap < length(long_answer) and prompt_length(long_answer) < cap <= prompt_length(long_question)

    # 2 of 40 (5 %): trained, with the one cut and the one dropped counted
    figures = train_adapter(tiny_base, short + [long_answer, long_question], tmp_path / "adapter",
                            TrainConfig(epochs=1, batch_size=8, max_length=cap))
    assert figures["examples"] == 39
    assert {k: figures["length"][k] for k in ("max_length", "truncated_examples", "dropped_examples")} == {
        "max_length": cap, "truncated_examples": 1, "dropped_examples": 1}

    # 3 of 40 past the cap: the launcher the pipeline uses refuses, naming the counts and the setting to change
    examples = short[:37] + [long_answer] * 3
    (tmp_path / "examples.jsonl").write_text("".join(json.dumps(e) + "\n" for e in examples))
    spec = {"base_dir": str(tiny_base), "out_dir": str(tmp_path / "refused"), "examples_path": str(tmp_path / "examples.jsonl"),
            "config": asdict(TrainConfig(epochs=1, batch_size=8, max_length=cap))}
    with pytest.raises(TrainingRefused, match=r"3 of 40 training examples would be cut and 0 dropped at the 140-token cap .*max_length"):
        run_training_subprocess(spec, tmp_path, lambda event: None, lambda text: None)
    assert not (tmp_path / "refused").exists()


STOP_ROWS = [{"question": e["question"], "key_answer": key} for e, key in zip(EXAMPLES, ["Rafael Ondo", "2019", "Lotte Brask"])]


def test_training_stops_once_the_sampled_facts_are_recalled_and_the_adapter_recalls_them(tiny_base, tmp_path):
    from memo_pipelines.qa import ask_memory, recalled
    from memo_pipelines.llm.backends import LocalChatModel
    from memo_pipelines.memory.merging import fold_adapter

    config = TrainConfig(learning_rate=5e-3, epochs=100, batch_size=2, stop_every=5, min_epochs=2, stop_patience=40)  # no plateau stop
    figures = train_adapter(tiny_base, EXAMPLES, tmp_path / "adapter", config, stop_rows=STOP_ROWS)
    assert figures["planned_steps"] == 200
    assert figures["stopped_early"] == "reached" and figures["steps"] < figures["planned_steps"]
    assert figures["stop_checks"][-1] == {"step": figures["steps"], "recall": 1.0, "declined": None}
    assert figures["kept_step"] == figures["steps"]  # the first check that recalls everything is the one kept
    model = LocalChatModel(fold_adapter(tiny_base, tmp_path / "adapter", tmp_path / "model"))
    answers = ask_memory(model, [r["question"] for r in STOP_ROWS], max_new_tokens=32)
    assert all(recalled(a, r["key_answer"]) for a, r in zip(answers, STOP_ROWS)), answers


def test_a_recall_plateau_stops_training_but_a_slow_start_does_not():
    from memo_pipelines.memory.training import stop_reason

    config = TrainConfig(stop_recall=0.9, stop_patience=2)
    assert stop_reason([0.0, 0.0, 0.0, 0.0], config) is None  # nothing learned yet: keep going
    assert stop_reason([0.2, 0.5, 0.6], config) is None
    assert stop_reason([0.2, 0.6, 0.6, 0.5], config) == "plateau"
    assert stop_reason([0.2, 0.6, 0.9], config) == "reached"


def test_the_adapter_kept_is_the_best_checked_state_that_still_declines_unknown_names():
    from memo_pipelines.memory.training import best_check

    config = TrainConfig(stop_decline=0.25)
    checks = [{"step": 16, "recall": 0.5, "declined": 0.5}, {"step": 32, "recall": 0.75, "declined": 0.25},
              {"step": 48, "recall": 0.9, "declined": 0.125}]
    assert best_check(checks, config)["step"] == 32  # the last recalls more but answers about invented names
    assert best_check(checks[2:], config) is None  # none declines enough: the caller keeps the last state
    ties = [{"step": 16, "recall": 1.0, "declined": None}, {"step": 32, "recall": 1.0, "declined": None}]
    assert best_check(ties, config)["step"] == 16  # no decline rows: every check counts, the earliest best is kept


def test_training_past_its_best_check_saves_the_weights_of_that_check(tiny_base, tmp_path):
    # recall reaches 1.0 early, but the bar is out of reach: training runs every step and keeps the first perfect state
    config = TrainConfig(learning_rate=5e-3, epochs=80, batch_size=2, stop_every=5, min_epochs=2, stop_patience=100, stop_recall=1.01)
    figures = train_adapter(tiny_base, EXAMPLES, tmp_path / "best", config, stop_rows=STOP_ROWS)
    kept = figures["kept_step"]
    assert figures["steps"] == figures["planned_steps"] and kept < figures["steps"], figures["stop_checks"]
    assert {c["step"]: c["recall"] for c in figures["stop_checks"]}[kept] == max(c["recall"] for c in figures["stop_checks"])
    # the same run stopped at that step by its step cap has the very weights that were saved
    short = train_adapter(tiny_base, EXAMPLES, tmp_path / "short", replace(config, max_steps=kept))
    assert short["steps"] == kept
    saved, reference = load_file(tmp_path / "best" / "adapter_model.safetensors"), load_file(tmp_path / "short" / "adapter_model.safetensors")
    assert saved.keys() == reference.keys() and all(torch.allclose(saved[k], reference[k]) for k in saved)


def test_the_stop_sample_carries_questions_about_invented_names_to_decline():
    from memo_pipelines.qa import IDK
    from memo_pipelines.memory.strategies import stop_rows

    rows = [{"id": f"r{i}", "step": "fact_extraction", "question": f"When did Rafael Ondo open plant {i}?", "answer": f"In {2000 + i}.",
             "key_answer": str(2000 + i)} for i in range(12)]
    sample = stop_rows(rows, 8, seed=0)
    declines = [r for r in sample if r["key_answer"] == IDK]
    assert len(sample) == 12 and len(declines) == 4
    for row in declines:
        assert row["question"].startswith("When did ") and "Rafael Ondo" not in row["question"]  # the name swapped, the shape kept
        assert row["question"] not in {r["question"] for r in rows}


def test_a_step_cap_shorter_than_the_minimum_passes_still_checks_and_chooses_among_the_checked_states(tiny_base, tmp_path):
    # 41 steps a pass, 2 passes before any check, a cap of 24 steps: the checks begin halfway through the budget
    examples = EXAMPLES * 27
    config = TrainConfig(learning_rate=5e-3, epochs=4, batch_size=2, max_steps=24, stop_every=4, min_epochs=2, stop_patience=100)
    figures = train_adapter(tiny_base, examples, tmp_path / "capped", config, stop_rows=STOP_ROWS)
    assert figures["steps"] == 24 and [c["step"] for c in figures["stop_checks"]] == [12, 16, 20, 24], figures["stop_checks"]
    # and the state kept is one of those checked states (best_check's choice)
    assert figures["kept_step"] in (12, 16, 20, 24)


def test_the_learning_rate_warms_up_then_decays_to_zero_by_the_last_planned_step(tiny_base, tmp_path):
    # for budgets of many passes: the rate rises, then decays, and a resumed run takes up the schedule where it was
    # (the resume test above compares weights with an uninterrupted run under the default flat rate)
    events = []
    config = TrainConfig(learning_rate=1e-3, epochs=10, batch_size=1, log_every=1, lr_schedule="linear", warmup_share=0.2)
    train_adapter(tiny_base, EXAMPLES, tmp_path / "scheduled", config, events.append)
    rates = [e["lr"] for e in events if "lr" in e]
    assert len(rates) == 30 and max(rates) == pytest.approx(1e-3)
    peak = rates.index(max(rates))
    assert peak == 5 and rates[:peak + 1] == sorted(rates[:peak + 1])  # warms up over 0.2 of the 30 planned steps
    assert rates[peak:] == sorted(rates[peak:], reverse=True) and rates[-1] == 0.0  # then decays to nothing
    flat = []
    train_adapter(tiny_base, EXAMPLES, tmp_path / "flat", replace(config, lr_schedule="constant"), flat.append)
    assert {e["lr"] for e in flat if "lr" in e} == {1e-3}
