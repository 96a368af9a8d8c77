import dagster as dg

from memo_pipelines.evaluation.card import Gates
from memo_pipelines.memory.merging import MergeConfig
from memo_pipelines.memory.training import TrainConfig
from memo_pipelines.pipeline import ProtocolEvalConfig, UpdateConfig


class TrainerResource(dg.ConfigurableResource):
    """Update strategy, training and merge settings; training runs in a child process launched by the asset.

    launcher: 'python' (one process, CPU or one GPU) or 'accelerate' with accelerate_config, e.g.
    configs/accelerate_deepspeed_zero2.yaml for DeepSpeed ZeRO-2 on a GPU host.
    """

    launcher: str = "python"
    accelerate_config: str = ""
    method: str = TrainConfig.method
    lora_r: int = TrainConfig.lora_r
    lora_alpha: int = TrainConfig.lora_alpha
    learning_rate: float = TrainConfig.learning_rate
    epochs: int = TrainConfig.epochs  # the most passes over the examples; early stopping usually ends sooner
    max_steps: int = TrainConfig.max_steps  # > 0: a cap on optimizer steps (a time budget)
    stop_every: int = TrainConfig.stop_every  # steps between early-stopping checks (0: train every epoch)
    stop_recall: float = TrainConfig.stop_recall  # stop once this share of the sampled training facts is recalled
    stop_patience: int = TrainConfig.stop_patience  # or once recall has not risen for this many checks
    min_epochs: int = TrainConfig.min_epochs  # no early stop before this many passes
    stop_decline: float = TrainConfig.stop_decline  # the state kept is the best-recall check declining this share of invented-name questions
    batch_size: int = TrainConfig.batch_size
    max_length: int = TrainConfig.max_length  # cap on tokens per example; training runs at the longest example's length up to it
    max_truncated_share: float = TrainConfig.max_truncated_share  # more examples than this share cut at the cap fails the step
    pack_length: int = TrainConfig.pack_length
    strategy: str = UpdateConfig.strategy  # continue | merge | retrain (memo_pipelines/pipeline/strategies.py)
    replay_size: int = UpdateConfig.replay_size  # continue: at least this many reflections replayed from each earlier version
    replay_share: float = UpdateConfig.replay_share  # continue: and at least this share of each earlier version's reflections
    general_mix: float = UpdateConfig.general_mix  # generic pairs sampled (no repeats) to this share of the training set
    compact_every: int = UpdateConfig.compact_every  # continue: every N-th update since the last retrain is a full retrain
    stop_sample: int = UpdateConfig.stop_sample  # training facts whose recall decides early stopping
    general_replay_size: int = UpdateConfig.general_replay_size  # generic questions with the base model's own answers replayed per update
    seed: int = TrainConfig.seed
    checkpoint_every: int = TrainConfig.checkpoint_every  # training steps between checkpoints; a killed training resumes from the last one
    lease_ttl_s: float = UpdateConfig.lease_ttl_s  # a version's training lease in the bucket expires this long after its last renewal
    merge_method: str = MergeConfig.method
    merge_weight: float = MergeConfig.weight
    merge_density: float = MergeConfig.density

    def train_config(self) -> TrainConfig:
        return TrainConfig(
            method=self.method, lora_r=self.lora_r, lora_alpha=self.lora_alpha, learning_rate=self.learning_rate, epochs=self.epochs,
            batch_size=self.batch_size, max_length=self.max_length, max_truncated_share=self.max_truncated_share, seed=self.seed,
            pack_length=self.pack_length, checkpoint_every=self.checkpoint_every, max_steps=self.max_steps, stop_every=self.stop_every,
            stop_recall=self.stop_recall, stop_patience=self.stop_patience, min_epochs=self.min_epochs, stop_decline=self.stop_decline,
        )

    def update_config(self) -> UpdateConfig:
        return UpdateConfig(strategy=self.strategy, replay_size=self.replay_size, replay_share=self.replay_share,
                            general_replay_size=self.general_replay_size, general_mix=self.general_mix, compact_every=self.compact_every,
                            stop_sample=self.stop_sample, lease_ttl_s=self.lease_ttl_s)

    def launch(self) -> dict:
        return {"launcher": self.launcher, "accelerate_config": self.accelerate_config}

    def merge_config(self) -> MergeConfig:
        return MergeConfig(method=self.merge_method, weight=self.merge_weight, density=self.merge_density, seed=self.seed)


class EvaluationResource(dg.ConfigurableResource):
    """The promotion gates (memo_pipelines.evaluation.card.Gates) and how users' own evaluation sets under evals/ are
    asked through the protocol (executive_backend "none": closed book only)."""

    min_heldout_recall: float = Gates.min_heldout_recall
    max_forgetting: float = Gates.max_forgetting
    min_abstention: float = Gates.min_abstention
    max_general_drop: float = Gates.max_general_drop
    sample_size: int = Gates.sample_size
    general_size: int = Gates.general_size
    executive_backend: str = ProtocolEvalConfig.executive_backend
    executive_model: str = ProtocolEvalConfig.executive_model
    executive_base_url: str = ProtocolEvalConfig.executive_base_url
    protocol_mode: str = ProtocolEvalConfig.mode
    user_eval_limit: int = ProtocolEvalConfig.limit

    def gates(self) -> Gates:
        return Gates(self.min_heldout_recall, self.max_forgetting, self.min_abstention, self.max_general_drop, self.sample_size, self.general_size)

    def protocol_config(self) -> ProtocolEvalConfig:
        return ProtocolEvalConfig(self.executive_backend, self.executive_model, self.executive_base_url, self.protocol_mode, self.user_eval_limit)
