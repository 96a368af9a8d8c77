from pydantic import Field

from memo_pipelines.evaluation.candidate import ProtocolEvalConfig
from memo_pipelines.evaluation.card import Gates
from memo_pipelines.memory.merging import MergeConfig
from memo_pipelines.memory.strategies import UpdateConfig
from memo_pipelines.memory.training import TrainConfig
from resources.fields import Part, build_config, settings_resource

TRAIN, UPDATE, MERGE = Part(TrainConfig), Part(UpdateConfig), Part(MergeConfig, "merge_", exclude=("seed",))
GATES, PROTOCOL = Part(Gates), Part(ProtocolEvalConfig)


class TrainerResource(settings_resource("TrainerSettings", TRAIN, UPDATE, MERGE)):
    """Update strategy, training and merge settings (memory/training.py TrainConfig, memory/strategies.py UpdateConfig,
    memory/merging.py MergeConfig as merge_*); training runs in a child process launched by the asset.

    launcher: 'python' (one process, CPU or one GPU) or 'accelerate' with accelerate_config, e.g.
    configs/accelerate_deepspeed_zero2.yaml for DeepSpeed ZeRO-2 on a GPU host.
    """

    launcher: str = Field("python", description="python: one process, CPU or one GPU; accelerate: accelerate launch with accelerate_config")
    accelerate_config: str = Field("", description="an accelerate config file, e.g. configs/accelerate_deepspeed_zero2.yaml")

    def train_config(self) -> TrainConfig:
        return build_config(TRAIN, self)

    def update_config(self) -> UpdateConfig:
        return build_config(UPDATE, self)

    def merge_config(self) -> MergeConfig:
        return build_config(MERGE, self, seed=self.seed)

    def launch(self) -> dict:
        return {"launcher": self.launcher, "accelerate_config": self.accelerate_config}


class EvaluationResource(settings_resource("EvaluationSettings", GATES, PROTOCOL)):
    """The promotion gates (evaluation/card.py Gates) and how users' own evaluation sets under evals/ are asked through
    the protocol (evaluation/candidate.py ProtocolEvalConfig; executive_backend "none": closed book only)."""

    def gates(self) -> Gates:
        return build_config(GATES, self)

    def protocol_config(self) -> ProtocolEvalConfig:
        return build_config(PROTOCOL, self)
