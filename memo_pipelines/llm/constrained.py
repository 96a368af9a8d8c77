"""Grammar-constrained decoding for in-process models: a reply asked for with an OpenAI `response_format` (a JSON
schema, or any JSON object) is decoded under a token mask, so it parses and matches the schema.

llguidance computes the masks (chosen by measurement: benchmarks/constrained_decoding.py). The mask is one row of a
packed int32 bitmask per sequence of the batch; `SchemaLogits` applies it inside `model.generate`. A reply must also
fit its token budget: once closing the value would take all the tokens left, only closing tokens are taken, so a
reply cut by the budget is still complete JSON.
"""

import copy
import json
import re
import threading
from typing import Protocol

import torch
from transformers import LogitsProcessor

JSON_OBJECT = {"type": "object"}


def schema_of(response_format: dict | None) -> dict | None:
    """The JSON schema an OpenAI `response_format` asks for; None for plain text."""
    if not response_format or response_format.get("type") == "text":
        return None
    if response_format.get("type") == "json_object":
        return JSON_OBJECT
    if response_format.get("type") == "json_schema":
        return response_format["json_schema"].get("schema") or JSON_OBJECT
    raise ValueError(f"unsupported response_format type {response_format.get('type')!r}")


class Grammar(Protocol):
    """What SchemaLogits needs from a constrained-decoding library: one matcher per sequence, a packed bitmask."""

    name: str

    def matcher(self, schema: dict): ...

    def fill(self, matcher, bitmask: torch.Tensor, row: int) -> None: ...

    def consume(self, matcher, token: int) -> bool: ...

    def finished(self, matcher) -> bool: ...

    def copy(self, matcher): ...


class LLGuidanceGrammar:
    """llguidance over a Hugging Face tokenizer; compiled grammars are cached by schema."""

    name = "llguidance"

    def __init__(self, tokenizer, vocab_size: int):
        import llguidance
        import llguidance.hf

        self._llg = llguidance
        self.tokenizer = llguidance.hf.from_tokenizer(tokenizer, n_vocab=vocab_size)
        self._grammars: dict[str, str] = {}
        self._lock = threading.Lock()

    def matcher(self, schema: dict):
        key = json.dumps(schema, sort_keys=True)
        with self._lock:
            if key not in self._grammars:
                # compact JSON: no whitespace between tokens, which a small model would otherwise repeat without end
                self._grammars[key] = self._llg.LLMatcher.grammar_from_json_schema(schema, overrides={"whitespace_flexible": False})
        matcher = self._llg.LLMatcher(self.tokenizer, self._grammars[key], log_level=0)
        if matcher.is_error():
            raise ValueError(f"JSON schema not supported for constrained decoding: {matcher.get_error()}")
        return matcher

    def fill(self, matcher, bitmask: torch.Tensor, row: int) -> None:
        target = bitmask[row]
        matcher.unsafe_compute_mask_ptr(target.data_ptr(), target.numel() * target.element_size())

    def consume(self, matcher, token: int) -> bool:
        return matcher.consume_token(token)

    def finished(self, matcher) -> bool:
        return matcher.is_stopped()

    def copy(self, matcher):
        return matcher.deep_copy()


def unpack_bitmask(bitmask: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """A packed int32 bitmask (batch, ceil(vocab / 32)) as a bool mask (batch, vocab_size): True = allowed."""
    import numpy as np

    # bit i of word w is token 32 w + i: little-endian words, least significant bit first
    bits = np.unpackbits(bitmask.numpy().astype("<i4", copy=False).view(np.uint8), axis=1, bitorder="little")
    return torch.from_numpy(bits[:, :vocab_size].astype(bool))


class ClosingTokens:
    """The tokens that finish a JSON value soonest, by where the reply stands: inside a string, a quote and then only
    closing brackets; outside, closing brackets, then a separator the grammar still demands (a required key follows a
    comma), then the smallest values. Each list is best first; the grammar's mask says which are allowed."""

    VALUES = ('""', "[]", "0", "null", "{}", "[", "{", '"')

    def __init__(self, tokenizer, vocab_size: int):
        self.texts = [tokenizer.decode([i]) for i in range(min(vocab_size, len(tokenizer)))]
        self.every_token = torch.arange(vocab_size)
        ids = range(len(self.texts))

        def brackets(i: int) -> int:
            return -(self.texts[i].count("]") + self.texts[i].count("}"))

        def ranked(keep, key) -> torch.Tensor:
            return torch.tensor(sorted((i for i in ids if keep(self.texts[i])), key=key), dtype=torch.long)

        self.in_string = [ranked(lambda t: re.fullmatch(r'"[\]}]*', t) is not None, brackets)]
        self.outside = [
            ranked(lambda t: re.fullmatch(r"[\]}]+", t) is not None, brackets),
            ranked(lambda t: t in (",", ":"), lambda i: self.texts[i]),
            ranked(lambda t: t in self.VALUES, lambda i: self.VALUES.index(self.texts[i])),
        ]


class JsonPosition:
    """Whether a JSON text generated so far stands inside a string, followed token by token."""

    def __init__(self):
        self.in_string, self.escaped = False, False

    def feed(self, text: str) -> None:
        for char in text:
            if self.escaped:
                self.escaped = False
            elif self.in_string and char == "\\":
                self.escaped = True
            elif char == '"':
                self.in_string = not self.in_string


def allowed_ids(bitmask_row: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """The ids (best first) whose bit is set in one packed bitmask row."""
    return ids[((bitmask_row[ids >> 5] >> (ids & 31)) & 1).bool()]


class SchemaLogits(LogitsProcessor):
    """A transformers logits processor: each row of the batch decodes under its own matcher, and a finished row may
    only end (EOS). Near the end of the budget each step works out, on a copy of the matcher, how many tokens closing
    the value would take; once that no longer fits in what is left, the row only closes (ClosingTokens)."""

    def __init__(self, grammar: Grammar, matchers: list, closing: ClosingTokens, max_new_tokens: int, eos_token_id: int,
                 window: int = 96):
        self.grammar, self.matchers, self.closing = grammar, matchers, closing
        self.max_new_tokens, self.eos_token_id, self.window = max_new_tokens, eos_token_id, window
        self.prompt_length: int | None = None
        self.done = [False] * len(matchers)
        self.failed = [False] * len(matchers)
        self.closing_rows = [False] * len(matchers)
        self.estimates = [0] * len(matchers)  # tokens closing took when last tried
        self.positions = [JsonPosition() for _ in matchers]
        self.bitmask: torch.Tensor | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.prompt_length is None:
            self.prompt_length = input_ids.shape[1]
            self.bitmask = torch.zeros((len(self.matchers), (scores.shape[1] + 31) // 32), dtype=torch.int32)
        generated = input_ids.shape[1] - self.prompt_length
        left = self.max_new_tokens - generated  # tokens still to come, this one included
        for row, matcher in enumerate(self.matchers):
            if generated and not self.done[row]:
                token = int(input_ids[row, -1])
                if token < len(self.closing.texts):
                    self.positions[row].feed(self.closing.texts[token])
                if not self.grammar.consume(matcher, token):
                    self.failed[row] = True  # cannot happen under the mask; the reply is then checked by the caller
                self.done[row] = self.failed[row] or self.grammar.finished(matcher)
            if self.done[row]:
                self.bitmask[row].zero_()
                self.bitmask[row, self.eos_token_id // 32] = 1 << (self.eos_token_id % 32)
                continue
            self.grammar.fill(matcher, self.bitmask, row)
            # every 4th step in the window, every step once the last estimate is near: a jump of more than 4 tokens a
            # step (a new item with long required keys) is caught in time
            estimate = self.estimates[row]
            if not self.closing_rows[row] and left <= self.window and (left % 4 == 0 or left <= estimate + 8):
                self.estimates[row] = self._closing_length(row, limit=left)
                self.closing_rows[row] = self.estimates[row] >= left - 2
        scores = scores.masked_fill(~unpack_bitmask(self.bitmask, scores.shape[1]), float("-inf"))
        for row, closing in enumerate(self.closing_rows):
            best = None if self.done[row] or not closing else self._closing_token(self.bitmask[row], self.positions[row])
            if best is not None:
                scores[row] = float("-inf")
                scores[row, best] = 0.0
        return scores

    def _closing_token(self, bitmask_row: torch.Tensor, position: JsonPosition) -> int | None:
        """The best allowed closing token; None where none is allowed (inside a key the grammar spells out)."""
        for tier in self.closing.in_string if position.in_string else self.closing.outside:
            permitted = allowed_ids(bitmask_row, tier)
            if len(permitted):
                return int(permitted[0])
        return None

    def _closing_length(self, row: int, limit: int) -> int:
        """Tokens that closing the row's value now would take (at most `limit`), tried on copies."""
        matcher, position = self.grammar.copy(self.matchers[row]), copy.copy(self.positions[row])
        scratch = self.bitmask[row : row + 1].clone()
        for steps in range(limit):
            if self.grammar.finished(matcher):
                return steps
            if steps:
                self.grammar.fill(matcher, scratch, 0)
            token = self._closing_token(scratch[0], position)
            if token is None:  # the grammar spells a key out: any allowed token is the next of it
                token = int(allowed_ids(scratch[0], self.closing.every_token)[0])
            position.feed(self.closing.texts[token] if token < len(self.closing.texts) else "")
            if not self.grammar.consume(matcher, token):
                return limit
        return limit
