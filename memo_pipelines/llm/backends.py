"""LLM backends behind one interface, chosen by name: in-process transformers or any OpenAI-compatible endpoint.

The generator, the executive and the memory all speak to models through `ChatModel`.
"""

import os
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping, Protocol

Message = dict[str, str]


class ChatModel(Protocol):
    name: str

    def chat(self, conversations: list[list[Message]], max_new_tokens: int = 64) -> list[str]: ...
    # backends below also take errors="none" (a request that still fails after the retries gives None, not an
    # exception) and count tokens in `usage`; the generator relies on both, the memory and executive need neither

    def complete(self, prompts: list[str], max_new_tokens: int = 32, stop: str | None = None) -> list[str]: ...


@dataclass(frozen=True)
class LLMSpec:
    """How to reach a model: backend 'local' (model = a directory) or 'openai' (model = a served model name)."""

    backend: str = "local"
    model: str = ""
    base_url: str = ""
    api_key_env: str = "OPENAI_API_KEY"
    timeout_s: float = 60.0
    max_retries: int = 4
    concurrency: int = 4
    # streamed replies: timeout_s then bounds the wait between tokens, not the whole reply, and a stream cut off
    # (a server that died mid-reply) is asked again like a failed request
    stream: bool = False

    @classmethod
    def from_values(cls, values: Mapping[str, Any], prefix: str = "", upper: bool = False, **overrides) -> "LLMSpec":
        """The one place configuration becomes an LLMSpec: CLI flags, MEMO_{ROLE}_* environment variables, a Dagster
        resource's fields or a benchmark's arguments. Keys are prefix + field name (upper-cased with `upper`); an
        override or value that is missing or empty takes the field's default; strings become the field's type."""
        chosen = {}
        for spec_field in fields(cls):
            value = overrides.get(spec_field.name)
            if value in (None, ""):
                name = prefix + (spec_field.name.upper() if upper else spec_field.name)
                value = values.get(name)
            if isinstance(spec_field.default, bool) and isinstance(value, str):
                value = value.strip().lower() in ("1", "true", "yes", "on")
            if value not in (None, ""):
                chosen[spec_field.name] = type(spec_field.default)(value)
        return cls(**chosen)


def inference_device(requested: str | None = None) -> tuple[str, str]:
    """(device, dtype name) for in-process inference: MEMO_DEVICE or `requested` ("auto", "cpu", "cuda", "cuda:1"),
    auto meaning CUDA where present; bfloat16 on a GPU that supports it, float32 on the CPU (where bf16 matmuls are
    slower than float32 on most cores and greedy answers drift)."""
    import torch

    requested = (requested or os.environ.get("MEMO_DEVICE") or "auto").strip().lower()
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {requested!r} asked for (MEMO_DEVICE), but torch sees no CUDA device")
        return requested, "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    return requested, "float32"


class LocalChatModel:
    """A transformers causal LM in this process on the best device present (inference_device), greedy decoding,
    batched with left padding; prompts are grouped by length so a batch pads little, and replies keep the input order.
    A `response_format` with a JSON schema is honoured by grammar-constrained decoding, so such replies always parse."""

    _load_lock = threading.Lock()

    def __init__(self, model_dir: str | Path, batch_size: int = 16, device: str | None = None):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.name = f"local:{Path(model_dir).name}"
        self.model_dir = Path(model_dir)
        self.device, dtype = inference_device(device)
        with self._load_lock:
            self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
            self.model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=getattr(torch, dtype)).to(self.device)
        self.model.eval()
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.batch_size = batch_size
        self.usage = Counter()

    @classmethod
    def from_model(cls, model, tokenizer, batch_size: int = 16) -> "LocalChatModel":
        self = cls.__new__(cls)
        self.name, self.model_dir, self.model, self.tokenizer, self.batch_size = "local:in-memory", None, model, tokenizer, batch_size
        self.device = str(next(model.parameters()).device)
        self.usage = Counter()
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        return self

    structured_output = True  # chat() takes response_format: a JSON schema's replies decode under its grammar

    def _schema_logits(self, schema: dict, rows: int, max_new_tokens: int):
        """A logits processor that keeps each of `rows` replies inside the schema's grammar (llm/constrained.py)."""
        from memo_pipelines.llm.constrained import ClosingTokens, LLGuidanceGrammar, SchemaLogits

        with self._load_lock:
            if getattr(self, "_grammar", None) is None:
                vocab_size = max(self.model.config.vocab_size, len(self.tokenizer))
                self._grammar = LLGuidanceGrammar(self.tokenizer, vocab_size), ClosingTokens(self.tokenizer, vocab_size)
        grammar, closing = self._grammar
        return SchemaLogits(grammar, [grammar.matcher(schema) for _ in range(rows)], closing, max_new_tokens,
                            self.tokenizer.eos_token_id)

    def _generate(self, texts: list[str], max_new_tokens: int, schema: dict | None = None) -> list[str]:
        import torch

        # longest first, so the first batch shows an out-of-memory at once; each batch holds prompts of similar length
        lengths = [len(ids) for ids in self.tokenizer(texts, add_special_tokens=False)["input_ids"]] if texts else []
        order = sorted(range(len(texts)), key=lambda i: -lengths[i])
        replies: list[str] = [""] * len(texts)
        for start in range(0, len(order), self.batch_size):
            indices = order[start : start + self.batch_size]
            batch = self.tokenizer([texts[i] for i in indices], return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
            constrained = {"logits_processor": [self._schema_logits(schema, len(indices), max_new_tokens)]} if schema else {}
            with torch.no_grad():
                out = self.model.generate(
                    **batch,
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    pad_token_id=self.tokenizer.pad_token_id,
                    eos_token_id=self.tokenizer.eos_token_id,
                    **constrained,
                )
            self.usage["prompt_tokens"] += int(batch["attention_mask"].sum())
            for i, row in zip(indices, out[:, batch["input_ids"].shape[1] :]):
                self.usage["completion_tokens"] += int((row != self.tokenizer.pad_token_id).sum())
                replies[i] = self.tokenizer.decode(row, skip_special_tokens=True).strip()
        return replies

    def chat(self, conversations: list[list[Message]], max_new_tokens: int = 64, errors: str = "raise",
             response_format: dict | None = None) -> list[str]:
        from memo_pipelines.llm.constrained import schema_of

        texts = [self.tokenizer.apply_chat_template(c, add_generation_prompt=True, tokenize=False) for c in conversations]
        return self._generate(texts, max_new_tokens, schema_of(response_format))

    def complete(self, prompts: list[str], max_new_tokens: int = 32, stop: str | None = None, errors: str = "raise") -> list[str]:
        replies = self._generate(prompts, max_new_tokens)
        return [r.split(stop)[0].strip() if stop else r for r in replies]


class OpenAIChatModel:
    """Any OpenAI-compatible endpoint (OpenAI, Gemini, vLLM, llama.cpp's server), at most `concurrency` requests in flight.

    The client retries timeouts, connection errors, 429s and 5xx `max_retries` times with exponential backoff (honouring
    Retry-After); with errors="none" a request that still fails gives None and is counted in usage["failed_requests"].
    """

    def __init__(self, spec: LLMSpec):
        import openai

        if not spec.base_url and spec.backend == "openai" and not os.environ.get(spec.api_key_env):
            raise RuntimeError(f"backend 'openai' needs a base_url or the environment variable {spec.api_key_env}")
        self.name = f"openai:{spec.model}"
        self.spec = spec
        self.client = openai.OpenAI(
            base_url=spec.base_url or None,
            api_key=os.environ.get(spec.api_key_env) or "not-needed",
            timeout=spec.timeout_s,
            max_retries=spec.max_retries,
        )
        self.usage = Counter()
        self._usage_lock = threading.Lock()
        self._schema_refused = False
        # one bound for the whole model, however many threads call chat() at once
        self._slots = threading.BoundedSemaphore(max(1, spec.concurrency))

    def _map(self, fn, items):
        with ThreadPoolExecutor(max_workers=max(1, self.spec.concurrency)) as pool:
            return list(pool.map(fn, items))

    structured_output = True  # chat() takes response_format (a JSON schema); an endpoint that refuses it is asked without

    def _create(self, messages: list[Message], max_new_tokens: int, structured: dict) -> tuple[str, Any]:
        """(reply text, usage) of one request; a streamed reply is gathered from its chunks."""
        request = dict(model=self.spec.model, messages=messages, max_tokens=max_new_tokens, temperature=0, **structured)
        if not self.spec.stream:
            reply = self.client.chat.completions.create(**request)
            return reply.choices[0].message.content or "", reply.usage
        return self._streamed(request)

    def _streamed(self, request: dict) -> tuple[str, Any]:
        """A streamed reply; a stream broken before its finish_reason is asked again, `max_retries` times, with backoff."""
        import httpx
        import openai

        for attempt in range(self.spec.max_retries + 1):
            parts, usage, finished = [], None, False
            try:
                for chunk in self.client.chat.completions.create(**request, stream=True, stream_options={"include_usage": True}):
                    usage = chunk.usage or usage
                    for choice in chunk.choices:
                        parts.append(choice.delta.content or "")
                        finished = finished or choice.finish_reason is not None
                if finished:
                    return "".join(parts), usage
                error = "the stream ended before the reply was finished"
            except (httpx.TransportError, openai.APIConnectionError) as broken:
                error = f"the stream broke after {len(parts)} chunks: {type(broken).__name__}: {broken}"
            with self._usage_lock:
                self.usage["broken_streams"] += 1
            if attempt < self.spec.max_retries:
                time.sleep(min(8.0, 0.5 * 2**attempt))
        raise openai.APIConnectionError(message=f"{error} (asked {self.spec.max_retries + 1} times)",
                                        request=httpx.Request("POST", f"{self.client.base_url}chat/completions"))

    def chat(self, conversations: list[list[Message]], max_new_tokens: int = 64, errors: str = "raise",
             response_format: dict | None = None) -> list[str | None]:
        import openai

        def one(messages):
            try:
                with self._slots:
                    structured = {"response_format": response_format} if response_format and not self._schema_refused else {}
                    try:
                        content, usage = self._create(messages, max_new_tokens, structured)
                    except openai.BadRequestError:
                        if not structured:
                            raise
                        self._schema_refused = True  # the endpoint does not do structured output: the caller repairs replies
                        content, usage = self._create(messages, max_new_tokens, {})
            except openai.OpenAIError:
                if errors == "raise":
                    raise
                with self._usage_lock:
                    self.usage["failed_requests"] += 1
                return None
            with self._usage_lock:
                self.usage["requests"] += 1
                if usage:
                    self.usage["prompt_tokens"] += usage.prompt_tokens or 0
                    self.usage["completion_tokens"] += usage.completion_tokens or 0
            return content.strip()

        return self._map(one, conversations)

    def complete(self, prompts: list[str], max_new_tokens: int = 32, stop: str | None = None, errors: str = "raise") -> list[str | None]:
        # chat endpoints are the common denominator: send the completion prompt as one user turn
        replies = self.chat([[{"role": "user", "content": p}] for p in prompts], max_new_tokens, errors)
        return [r.split(stop)[0].strip() if stop and r is not None else r for r in replies]


def load_chat_model(spec: LLMSpec, default_local_dir: Path | None = None) -> ChatModel:
    backends = {"local": lambda: LocalChatModel(spec.model or default_local_dir), "openai": lambda: OpenAIChatModel(spec)}
    if spec.backend not in backends:
        raise ValueError(f"unknown LLM backend {spec.backend!r}; choose one of {sorted(backends)}")
    if spec.backend == "local" and not (spec.model or default_local_dir):
        raise ValueError("local backend needs a model directory")
    return backends[spec.backend]()
