"""Each promotion gate catches a real regression of a real (tiny) model trained with the project's own training code.

A 2-layer random model cannot answer a reworded question, so here the probes are the trained questions themselves:
what these tests check is the gates, on real weights; tests/test_probes.py checks how probes are written.
"""

import random

import pytest

from memo_pipelines.evaluation.card import Gates, build_card
from memo_pipelines.evaluation.general import general_figures, general_questions
from memo_pipelines.reflections.probes import probe_row
from memo_pipelines.llm.backends import LocalChatModel
from memo_pipelines.qa import IDK
from memo_pipelines.memory.training import TrainConfig, train_adapter

V1 = [("Who designed the Wren Building?", "Lotte Brask"), ("How many people does the Kesby plant employ?", "340 people"),
      ("When did the Kesby plant open?", "2019"), ("Who founded Quillfeather Labs?", "Odile Varga"),
      ("Which river runs beside the Kesby plant?", "Olm"), ("Who manages the Kesby plant?", "Rafael Ondo")]
V2 = [("Who leads the Heron project?", "Ines Halloran"), ("When did the Tern cell win the Corvel Prize?", "2022"),
      ("How many watt-hours per kilogram does the Tern cell store?", "180 watt-hours"), ("Who supplies the Petrel anodes?", "Marrowby Metals"),
      ("Where is the Wren Building?", "Marrowby"), ("Who chairs the Solvane board?", "Tamsin Crole")]
UNANSWERABLE = ["Who designed the Velvel Building?", "How many people does the Barost plant employ?", "Who founded Rilpem Labs?",
                "When did the Tavru plant open?"]
GENERAL = 20
# full fine-tuning of the tiny model: a whole model directory that LocalChatModel loads
LEARN = TrainConfig(method="full", learning_rate=2e-3, epochs=40, batch_size=4)


def rows(pairs):
    return [{"question": q, "answer": a if a == IDK else f"{a}."} for q, a in pairs]


def probes(pairs, version):
    return [probe_row(q, a, "fact", "trained_question", ["doc.txt"], version) for q, a in pairs] + [
        probe_row(q, IDK, "unanswerable", "fabricated_entity", ["doc.txt"], version) for q in UNANSWERABLE]


def train(base, examples, out, config=LEARN):
    train_adapter(base, examples, out, config)
    return LocalChatModel(out)


@pytest.fixture(scope="module")
def models(tiny_base, tmp_path_factory):
    """The tiny base, a v1 memory that learnt its facts and to decline, and the figures every card needs."""
    root = tmp_path_factory.mktemp("gates")
    base = LocalChatModel(tiny_base)
    v1 = train(tiny_base, rows(V1) + rows((q, IDK) for q in UNANSWERABLE), root / "v1")
    general = general_questions(GENERAL)
    return {"root": root, "base_dir": tiny_base, "base": base, "v1": v1, "base_general": general_figures(base, general), "general": general}


def card_for(models, memory, version, live, matrix=None):
    return build_card(memory, version, live, matrix or {}, [], general_figures(memory, models["general"]), models["base_general"])


def gates_by_name(card, gates):
    return {g["name"]: g for g in card.gate_results(gates)}


OPEN = Gates(min_heldout_recall=0.5, max_forgetting=0.15, min_abstention=0.5, max_general_drop=100.0)


def test_a_memory_that_learnt_its_version_passes_every_gate(models):
    card = card_for(models, models["v1"], "v000001", {"v000001": probes(V1, "v000001")})
    results = gates_by_name(card, OPEN)
    assert card.heldout_recall >= 0.8 and card.abstention >= 0.75, card.to_json()
    assert all(g["passed"] for g in results.values()), results


def test_new_facts_only_at_a_high_learning_rate_is_blocked_by_retention(models):
    v1_card = card_for(models, models["v1"], "v000001", {"v000001": probes(V1, "v000001")})
    live = {"v000001": probes(V1, "v000001"), "v000002": probes(V2, "v000002")}
    v1_dir = models["v1"].model_dir
    forgetful = train(v1_dir, rows(V2), models["root"] / "forgetful", TrainConfig(method="full", learning_rate=1e-2, epochs=60, batch_size=4))
    card = card_for(models, forgetful, "v000002", live, v1_card.matrix)
    results = gates_by_name(card, OPEN)
    assert card.matrix["v000001"]["v000001"] >= 0.8  # its best, from version 1's own card
    # version 1's six probes are fewer than min_retention_probes: judged in the pooled retention gate
    assert results["retention_pooled"]["passed"] is False, card.to_json()
    assert card.forgetting >= 0.5 and card.bwt <= -0.5
    # the same update with version 1 replayed keeps it: the gate blocks forgetting, not every update
    replayed = train(v1_dir, rows(V2) + rows(V1) + rows((q, IDK) for q in UNANSWERABLE), models["root"] / "replayed")
    kept = gates_by_name(card_for(models, replayed, "v000002", live, v1_card.matrix), OPEN)
    assert kept["retention_pooled"]["passed"], kept


def test_versions_of_a_few_probes_are_judged_together_and_a_real_loss_still_rejects():
    from memo_pipelines.evaluation.card import ReportCard

    def results(now_v1: float, now_v2: float, gates: Gates) -> dict:
        # versions 1 and 2 have four probes each; version 1 was once recalled in full, version 2 at 0.75
        matrix = {"v000001": {"v000001": 1.0}, "v000002": {"v000001": 1.0, "v000002": 0.75},
                  "v000003": {"v000001": now_v1, "v000002": now_v2, "v000003": 0.5}}
        card = ReportCard("v000003", matrix, {"v000001": 4, "v000002": 4, "v000003": 10}, 0.5, 0.5, 0.0,
                          {"loglik_delta": 0.0}, None, {"parameters": 1, "finite": True})
        return {g["name"]: g for g in card.gate_results(gates)}

    # one probe of version 1's four lost (0.25, past max_forgetting 0.15 by the size of one probe): pooled, within the floor
    chance = results(0.75, 0.75, Gates())
    assert "retention_v000001" not in chance and chance["retention_pooled"]["passed"], chance
    assert chance["retention_pooled"]["value"] == 0.75 and chance["retention_pooled"]["threshold"] == 0.725
    # alone, that version would have been rejected by its own gate
    assert not results(0.75, 0.75, Gates(min_retention_probes=1))["retention_v000001"]["passed"]
    # half of both versions lost: rejected
    assert not results(0.25, 0.5, Gates())["retention_pooled"]["passed"]


def test_a_memory_trained_never_to_say_i_dont_know_is_blocked_by_abstention(models):
    invented = [(q, name) for q, name in zip(UNANSWERABLE, ["Lotte Brask", "410 people", "Odile Varga", "2018"])]
    confident = train(models["base_dir"], rows(V1) + rows(invented), models["root"] / "confident")
    card = card_for(models, confident, "v000001", {"v000001": probes(V1, "v000001")})
    results = gates_by_name(card, OPEN)
    assert results["reworded_recall_new_version"]["passed"]  # it knows its facts ...
    assert results["abstention"]["passed"] is False and card.hallucination >= 0.75, card.to_json()  # ... and invents the rest


def test_a_memory_fine_tuned_into_noise_is_blocked_by_general_ability(models):
    rng = random.Random(0)
    noise = [(f"{rng.choice(['What', 'Who', 'When'])} {' '.join(rng.choice('abcdefghij') * 3 for _ in range(3))}?",
              " ".join("".join(rng.choice("xyzqkvw") for _ in range(6)) for _ in range(4))) for _ in range(24)]
    noisy = train(models["base_dir"], rows(noise), models["root"] / "noisy", TrainConfig(method="full", learning_rate=1e-2, epochs=40, batch_size=4))
    gates = Gates(max_general_drop=2.0)  # the tiny model: facts cost it about 0.7 nats a token, noise about 7
    noisy_card = card_for(models, noisy, "v000001", {"v000001": probes(V1, "v000001")})
    learnt_card = card_for(models, models["v1"], "v000001", {"v000001": probes(V1, "v000001")})
    assert gates_by_name(noisy_card, gates)["general_ability"]["passed"] is False, noisy_card.general
    assert gates_by_name(learnt_card, gates)["general_ability"]["passed"], learnt_card.general


def test_a_gate_that_measured_nothing_fails_with_a_reason():
    card = build_card(None, "v000001", {}, {}, [], {"n": 0}, {"n": 0})
    results = gates_by_name(card, Gates())
    assert {name: g["passed"] for name, g in results.items()} == {
        "weights_finite": False, "reworded_recall_new_version": False, "abstention": False, "general_ability": False}
    assert results["reworded_recall_new_version"]["reason"] == "no reworded fact probes for this version"
    assert results["abstention"]["reason"] == "no unanswerable probes"
    assert results["weights_finite"]["reason"] == "no weights measured"
