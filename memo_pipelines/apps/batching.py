"""Many requests, one model: per-request views of the executive and the memory that count each request's own tokens.

An in-process transformers model is not thread-safe, so a `ModelWorker` owns it: one thread makes every call, and
the conversations of concurrent requests that queue while it is busy (or arrive within a few milliseconds of each
other) go to the model as one batch. A remote OpenAI-compatible model is thread-safe and batches on its side (vLLM),
so each request talks to it directly through a view that shares its client and its in-flight bound.
"""

import copy
import threading
import time
from collections import Counter
from concurrent.futures import Future
from dataclasses import dataclass, field

from memo_pipelines.llm.backends import OpenAIChatModel

TOKEN_KEYS = ("prompt_tokens", "completion_tokens")


class Tally:
    """Counters that many threads add to: the server's figures in GET /health."""

    def __init__(self):
        self._lock = threading.Lock()
        self._counts = Counter()

    def add(self, counts) -> None:
        with self._lock:
            self._counts.update(counts)

    def snapshot(self) -> dict:
        with self._lock:
            return dict(self._counts)


@dataclass
class _Pending:
    conversations: list
    max_new_tokens: int
    future: Future = field(default_factory=Future)


def split_usage(usage: Counter, weights: list[int]) -> list[Counter]:
    """Tokens of one shared batch divided among its requests by their share of the text; the parts sum to the whole."""
    total, parts = max(1, sum(weights)), [Counter() for _ in weights]
    for key in TOKEN_KEYS:
        shares = [usage[key] * w // total for w in weights]
        shares[max(range(len(weights)), key=weights.__getitem__)] += usage[key] - sum(shares)
        for part, share in zip(parts, shares):
            part[key] = share
    return parts


class ModelWorker:
    """The one thread that calls a model that is not thread-safe; concurrent callers' conversations share its batches."""

    def __init__(self, model, role: str, stats: Tally | None = None, window_s: float = 0.005):
        self.model, self.role, self.name, self.window_s = model, role, model.name, window_s
        self.stats = stats if stats is not None else Tally()  # {role}_batches, {role}_calls, {role}_conversations
        self._pending: list[_Pending] = []
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=f"{role}-worker", daemon=True)
        self._thread.start()

    def chat(self, conversations: list, max_new_tokens: int = 64) -> tuple[list[str], Counter]:
        """(replies, this call's share of the tokens); blocks until the batch it joined has run."""
        item = _Pending(conversations, max_new_tokens)
        with self._cond:
            if self._closed:
                raise RuntimeError(f"{self.name} was unloaded")
            self._pending.append(item)
            self._cond.notify()
        return item.future.result()

    def _take(self) -> list[_Pending] | None:
        with self._cond:
            while not self._pending and not self._closed:
                self._cond.wait()
            if self._closed and not self._pending:
                return None
            ends = time.monotonic() + self.window_s  # a moment for concurrent requests' turns to join
            while (left := ends - time.monotonic()) > 0 and not self._closed:
                self._cond.wait(left)
            first = self._pending[0].max_new_tokens
            batch = [p for p in self._pending if p.max_new_tokens == first]
            self._pending = [p for p in self._pending if p.max_new_tokens != first]
            return batch

    def _run(self) -> None:
        while (batch := self._take()) is not None:
            conversations = [c for item in batch for c in item.conversations]
            before = Counter(getattr(self.model, "usage", {}))
            try:
                replies = self.model.chat(conversations, max_new_tokens=batch[0].max_new_tokens)
            except BaseException as error:  # every caller in the batch gets the error, the worker lives on
                for item in batch:
                    item.future.set_exception(error)
                continue
            used = Counter(getattr(self.model, "usage", {}))
            used.subtract(before)
            weights = [sum(len(str(m.get("content", ""))) for c in item.conversations for m in c) + 1 for item in batch]
            self.stats.add({f"{self.role}_batches": 1, f"{self.role}_calls": len(batch), f"{self.role}_conversations": len(conversations)})
            start = 0
            for item, share in zip(batch, split_usage(used, weights)):
                item.future.set_result((replies[start : start + len(item.conversations)], share))
                start += len(item.conversations)

    def close(self) -> None:
        """Let queued calls finish, stop the thread and drop the model, so its memory can be freed."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout=60)
        self.model = None


class RequestModel:
    """What one request's protocol talks to: the shared model, with this request's tokens and progress recorded."""

    def __init__(self, shared, role: str, usage: Counter, on_call=None):
        self.role, self.usage, self.on_call = role, usage, on_call
        self.name = shared.name
        if isinstance(shared, OpenAIChatModel):
            # the same client and in-flight bound, a usage counter of this request's own
            self._remote = copy.copy(shared)
            self._remote.usage = Counter()
            self._worker = None
        else:
            self._worker, self._remote = shared, None

    def chat(self, conversations: list, max_new_tokens: int = 64) -> list[str]:
        if self.on_call:
            self.on_call(self.role, "start", conversations, None)
        if self._worker is not None:
            replies, used = self._worker.chat(conversations, max_new_tokens)
        else:
            before = Counter(self._remote.usage)
            replies = self._remote.chat(conversations, max_new_tokens=max_new_tokens)
            used = Counter(self._remote.usage)
            used.subtract(before)
        self.usage.update({key: used[key] for key in TOKEN_KEYS})
        if self.on_call:
            self.on_call(self.role, "done", conversations, replies)
        return replies


def shared_model(model, role: str, stats: Tally, window_s: float = 0.005):
    """How concurrent requests share a model: remote models as they are, in-process ones behind a ModelWorker."""
    return model if isinstance(model, OpenAIChatModel) else ModelWorker(model, role, stats, window_s)


def close_shared(model) -> None:
    if isinstance(model, ModelWorker):
        model.close()
