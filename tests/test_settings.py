"""Each setting is declared once, in the library's config dataclass: the resources carry every field of it, with its
default and its comment as the launchpad's description, and hand back the dataclass with the values set."""

import dataclasses

import pytest

from memo_pipelines.evaluation.candidate import ProtocolEvalConfig
from memo_pipelines.evaluation.card import Gates
from memo_pipelines.memory.merging import MergeConfig
from memo_pipelines.memory.strategies import UpdateConfig
from memo_pipelines.memory.training import TrainConfig
from memo_pipelines.reflections.probes import ProbeConfig
from memo_pipelines.reflections.steps import SynthesisConfig
from resources import EvaluationResource, GeneratorResource, TrainerResource

# (resource, dataclass, field prefix, fields the resource sets itself)
CARRIED = [
    (TrainerResource, TrainConfig, "", ()),
    (TrainerResource, UpdateConfig, "", ()),
    (TrainerResource, MergeConfig, "merge_", ("seed",)),
    (EvaluationResource, Gates, "", ()),
    (EvaluationResource, ProtocolEvalConfig, "", ()),
    (GeneratorResource, SynthesisConfig, "", ("document_workers",)),
    (GeneratorResource, ProbeConfig, "probe_", ()),
]


@pytest.mark.parametrize("resource, config, prefix, own", CARRIED, ids=lambda v: getattr(v, "__name__", None))
def test_the_launchpad_shows_every_field_of_the_config_with_its_default(resource, config, prefix, own):
    launchpad = resource.to_config_schema().as_field().config_type.fields
    for field in dataclasses.fields(config):
        if field.name in own:
            continue
        shown = launchpad[prefix + field.name]
        default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
        assert not shown.is_required and shown.default_value == (list(default) if isinstance(default, tuple) else default), field.name
        assert shown.description, f"{config.__name__}.{field.name} has no description"


def test_a_field_comment_is_its_description():
    launchpad = TrainerResource.to_config_schema().as_field().config_type.fields
    assert launchpad["epochs"].description.startswith("the most passes over the examples")
    assert "continue: at least this many reflections replayed" in launchpad["replay_size"].description


def test_the_resources_hand_back_the_configs_with_the_values_set():
    trainer = TrainerResource(epochs=3, stop_decline=0.5, strategy="merge", replay_share=0.5, merge_method="linear", merge_density=0.7, seed=7)
    assert trainer.train_config() == TrainConfig(epochs=3, stop_decline=0.5, seed=7)
    assert trainer.update_config() == UpdateConfig(strategy="merge", replay_share=0.5)
    assert trainer.merge_config() == MergeConfig(method="linear", density=0.7, seed=7)
    evaluation = EvaluationResource(min_abstention=0.5, protocol_mode="direct")
    assert evaluation.gates() == Gates(min_abstention=0.5)
    assert evaluation.protocol_config() == ProtocolEvalConfig(protocol_mode="direct")
    generator = GeneratorResource(backend="openai", steps=["fact_extraction"], chunk_chars=900, probe_facts_per_document=2)
    assert generator.synthesis_config() == SynthesisConfig(steps=("fact_extraction",), chunk_chars=900, document_workers=generator.concurrency)
    assert generator.probe_config() == ProbeConfig(facts_per_document=2)
    assert GeneratorResource().synthesis_config().document_workers == 1  # an in-process model synthesises one document at a time
