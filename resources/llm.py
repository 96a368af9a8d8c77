from pathlib import Path

import dagster as dg

from memo_pipelines.llm import ChatModel, LLMSpec, load_chat_model


class GeneratorResource(dg.ConfigurableResource):
    """The GENERATOR: 'local' runs the base memory model in-process; 'openai' talks to any OpenAI-compatible endpoint.

    strategy 'auto' picks 'grounded' (spans from the text, the model only phrases questions) for the local backend
    and 'llm_json' (the model writes the pairs) for an endpoint.
    """

    backend: str = "local"
    model: str = ""
    base_url: str = ""
    api_key_env: str = "OPENAI_API_KEY"
    strategy: str = "auto"
    timeout_s: float = 120.0
    max_retries: int = 4
    concurrency: int = 4

    def chat_model(self, default_local_dir: Path) -> ChatModel:
        spec = LLMSpec(self.backend, self.model, self.base_url, self.api_key_env, self.timeout_s, self.max_retries, self.concurrency)
        return load_chat_model(spec, default_local_dir)

    def resolved_strategy(self) -> str:
        if self.strategy != "auto":
            return self.strategy
        return "grounded" if self.backend == "local" else "llm_json"
