from pathlib import Path

import dagster as dg

from memo_pipelines.llm.backends import ChatModel, LLMSpec, load_chat_model
from memo_pipelines.evaluation.probes import ProbeConfig
from memo_pipelines.reflections.expectations import MIN_VERIFIED_SHARE
from memo_pipelines.reflections.synthesis import SynthesisConfig


class GeneratorResource(dg.ConfigurableResource):
    """The GENERATOR: 'local' runs the base memory model in-process; 'openai' talks to any OpenAI-compatible endpoint.

    strategy 'auto' picks 'grounded' (spans from the text, the model only phrases questions, the other steps are built
    by rule) for the local backend and 'llm_json' (every step is a JSON prompt, checked by rules) for an endpoint.
    The remaining fields bound the five-step synthesis (memo_pipelines.reflections.steps.SynthesisConfig).
    """

    backend: str = "local"
    model: str = ""
    base_url: str = ""
    api_key_env: str = "OPENAI_API_KEY"
    strategy: str = "auto"
    timeout_s: float = 120.0
    max_retries: int = 4
    concurrency: int = 4
    steps: list[str] = list(SynthesisConfig.steps)
    chunk_chars: int = SynthesisConfig.chunk_chars
    chunk_overlap: int = SynthesisConfig.chunk_overlap
    max_rewrites: int = SynthesisConfig.max_rewrites
    cross_document_groups: int = SynthesisConfig.cross_document_groups
    cross_document_pairs_per_group: int = SynthesisConfig.cross_document_pairs_per_group
    unanswerable_per_document: int = SynthesisConfig.unanswerable_per_document
    min_verified_share: float = MIN_VERIFIED_SHARE  # blocking check: share of checked pairs that passed verification
    probe_facts_per_document: int = ProbeConfig.facts_per_document  # held-out probes, written after the reflections
    probe_unanswerable_per_document: int = ProbeConfig.unanswerable_per_document
    probe_max_training_overlap: float = ProbeConfig.max_training_overlap

    def chat_model(self, default_local_dir: Path) -> ChatModel:
        return load_chat_model(LLMSpec.from_values(self.model_dump()), default_local_dir)

    def resolved_strategy(self) -> str:
        if self.strategy != "auto":
            return self.strategy
        return "grounded" if self.backend == "local" else "llm_json"

    def probe_config(self) -> ProbeConfig:
        return ProbeConfig(self.probe_facts_per_document, self.probe_unanswerable_per_document, self.probe_max_training_overlap)

    def synthesis_config(self) -> SynthesisConfig:
        return SynthesisConfig(
            steps=tuple(self.steps), chunk_chars=self.chunk_chars, chunk_overlap=self.chunk_overlap, max_rewrites=self.max_rewrites,
            cross_document_groups=self.cross_document_groups, cross_document_pairs_per_group=self.cross_document_pairs_per_group,
            unanswerable_per_document=self.unanswerable_per_document,
            document_workers=1 if self.backend == "local" else self.concurrency,
        )
