from pathlib import Path

from pydantic import Field

from memo_pipelines.llm.backends import ChatModel, LLMSpec, load_chat_model
from memo_pipelines.reflections.expectations import MIN_VERIFIED_SHARE
from memo_pipelines.reflections.probes import ProbeConfig
from memo_pipelines.reflections.synthesis import SynthesisConfig
from resources.fields import Part, build_config, settings_resource

# the generator waits longer than the default client: a synthesis prompt asks for a whole list of pairs
ENDPOINT = Part(LLMSpec, defaults={"timeout_s": 120.0})
# document_workers follows the backend: an endpoint serves several documents at once, an in-process model one
SYNTHESIS, PROBES = Part(SynthesisConfig, exclude=("document_workers",)), Part(ProbeConfig, "probe_")


class GeneratorResource(settings_resource("GeneratorSettings", ENDPOINT, SYNTHESIS, PROBES)):
    """The GENERATOR: 'local' runs the base memory model in-process; 'openai' talks to any OpenAI-compatible endpoint.

    strategy 'auto' picks 'grounded' (spans from the text, the model only phrases questions, the other steps are built
    by rule) for the local backend and 'llm_json' (every step is a JSON prompt, checked by rules) for an endpoint.
    The other fields are the endpoint (llm/backends.py LLMSpec), the five-step synthesis (reflections/steps.py
    SynthesisConfig) and the held-out probes written after the reflections (reflections/probes.py ProbeConfig, probe_*).
    """

    strategy: str = Field("auto", description="auto (grounded for local, llm_json for an endpoint), grounded or llm_json")
    min_verified_share: float = Field(MIN_VERIFIED_SHARE, description="blocking check: share of checked pairs that passed verification")

    def chat_model(self, default_local_dir: Path) -> ChatModel:
        return load_chat_model(LLMSpec.from_values(self.model_dump()), default_local_dir)

    def resolved_strategy(self) -> str:
        if self.strategy != "auto":
            return self.strategy
        return "grounded" if self.backend == "local" else "llm_json"

    def probe_config(self) -> ProbeConfig:
        return build_config(PROBES, self)

    def synthesis_config(self) -> SynthesisConfig:
        return build_config(SYNTHESIS, self, document_workers=1 if self.backend == "local" else self.concurrency)
