import dagster as dg

from memo_pipelines.evaluation import Gates
from memo_pipelines.merging import MergeConfig
from memo_pipelines.training import TrainConfig


class TrainerResource(dg.ConfigurableResource):
    """Training and merge settings; training runs in a child process launched by the asset.

    launcher: 'python' (one process, CPU or one GPU) or 'accelerate' with accelerate_config, e.g.
    configs/accelerate_deepspeed_zero2.yaml for DeepSpeed ZeRO-2 on a GPU host.
    """

    launcher: str = "python"
    accelerate_config: str = ""
    method: str = "lora"
    lora_r: int = 16
    lora_alpha: int = 32
    learning_rate: float = 3e-4
    epochs: int = 8
    batch_size: int = 8
    max_length: int = 160
    pack_length: int = 0
    replay_size: int = 64  # earlier versions' reflections replayed per update
    general_replay_size: int = 15  # generic questions with the base model's own answers replayed per update
    seed: int = 0
    checkpoint_every: int = 25  # training steps between checkpoints; a killed training resumes from the last one
    lease_ttl_s: float = 900.0  # a version's training lease in the bucket expires this long after its last renewal
    merge_method: str = "ties"
    merge_weight: float = 1.0
    merge_density: float = 0.5

    def train_config(self) -> TrainConfig:
        return TrainConfig(
            method=self.method, lora_r=self.lora_r, lora_alpha=self.lora_alpha, learning_rate=self.learning_rate, epochs=self.epochs,
            batch_size=self.batch_size, max_length=self.max_length, seed=self.seed, pack_length=self.pack_length,
            checkpoint_every=self.checkpoint_every,
        )

    def launch(self) -> dict:
        return {"launcher": self.launcher, "accelerate_config": self.accelerate_config}

    def merge_config(self) -> MergeConfig:
        return MergeConfig(method=self.merge_method, weight=self.merge_weight, density=self.merge_density, seed=self.seed)


class EvaluationResource(dg.ConfigurableResource):
    """The promotion gates."""

    min_recall: float = 0.6
    max_retention_drop: float = 0.15
    min_general: float = 0.5
    sample_size: int = 60

    def gates(self) -> Gates:
        return Gates(self.min_recall, self.max_retention_drop, self.min_general)
