"""Serving that follows the registry: promotions and rollbacks reach a running server without a restart.

A `PointerWatcher` polls the ETag of the promoted pointer (one HEAD request a poll) and reads the pointer only when the
ETag moved. On a move, a loader builds a `Deployment` of the newly promoted memory beside the one serving; a
`ModelSwitch` swaps it in between requests. A request keeps the deployment it started on until it ends; a replaced
deployment is closed (its model freed) when its last request is done. Rollback moves the pointer like a promotion
does, so it is followed the same way. No dagster here: `memo serve` runs without the orchestration package.
"""

import gc
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable

from memo_pipelines.storage import layout


@dataclass
class Deployment:
    """One promoted memory, loaded and ready: what a request is answered with from start to end."""

    model_id: str | None
    promoted_at: float | None  # when the pointer moved to this model (a promotion or a rollback)
    reason: str
    memory: object  # a ChatModel, or a ModelWorker owning one
    sources: object = None  # the SourceIndex of the model's lineage
    close: Callable[[], None] = lambda: None  # frees what the deployment holds (the model, an adapter on the endpoint)
    memory_label: str = ""
    loaded_at: float = field(default_factory=time.time)

    def describe(self) -> dict:
        return {"model_id": self.model_id, "promoted_at": self.promoted_at, "reason": self.reason, "memory": self.memory_label,
                "loaded_at": self.loaded_at}


def promoted_move(pointer: dict) -> tuple[float | None, str]:
    """(time, reason) of the pointer's last move to the model it now names."""
    for entry in reversed(pointer.get("history") or []):
        if entry.get("model_id") == pointer.get("model_id"):
            return entry.get("at"), entry.get("reason", "")
    return None, ""


class ModelSwitch:
    """The deployment new requests start on, and the replaced ones still finishing their requests."""

    def __init__(self, deployment: Deployment, log=None):
        self._lock = threading.Lock()
        self._current = deployment
        self._in_flight: dict[int, int] = {id(deployment): 0}
        self._retired: dict[int, Deployment] = {}
        self.log = log or (lambda message: print(message, file=sys.stderr, flush=True))

    @property
    def current(self) -> Deployment:
        return self._current

    @contextmanager
    def acquire(self):
        """The current deployment, held for the length of one request."""
        with self._lock:
            deployment = self._current
            self._in_flight[id(deployment)] += 1
        try:
            yield deployment
        finally:
            with self._lock:
                self._in_flight[id(deployment)] -= 1
                done = id(deployment) in self._retired and self._in_flight[id(deployment)] == 0
                if done:
                    del self._retired[id(deployment)], self._in_flight[id(deployment)]
            if done:
                self._free(deployment)

    def switch(self, deployment: Deployment) -> Deployment:
        """Serve `deployment` from the next request on; the old one is freed once its requests are done."""
        with self._lock:
            old, self._current = self._current, deployment
            self._in_flight[id(deployment)] = 0
            idle = self._in_flight[id(old)] == 0
            if idle:
                del self._in_flight[id(old)]
            else:
                self._retired[id(old)] = old
        self.log(f"memo serve: now serving {deployment.model_id} ({deployment.reason}); {old.model_id} "
                 + ("unloaded" if idle else "unloads when its requests finish"))
        if idle:
            self._free(old)
        return old

    def close_all(self) -> None:
        """Free every deployment, in flight or not: the server is going away."""
        with self._lock:
            every, self._retired, self._in_flight = [self._current, *self._retired.values()], {}, {}
        for deployment in every:
            self._free(deployment)

    def loaded(self) -> list[dict]:
        """Every deployment still holding a model: the current one first, then replaced ones with requests left."""
        with self._lock:
            return [{**d.describe(), "in_flight": self._in_flight.get(id(d), 0)} for d in [self._current, *self._retired.values()]]

    def _free(self, deployment: Deployment) -> None:
        try:
            deployment.close()
        except Exception as error:  # a failed unload must not fail the request that happened to end last
            self.log(f"memo serve: unloading {deployment.model_id} failed: {type(error).__name__}: {error}")
        deployment.memory = deployment.sources = None
        gc.collect()
        torch = sys.modules.get("torch")  # a remote memory never imported it, and importing it here takes seconds
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()


class PointerWatcher:
    """Polls the promoted pointer's ETag; on a move, loads the newly named model and switches to it."""

    def __init__(self, store, switch: ModelSwitch, load: Callable[[dict], Deployment], etag: str | None, interval_s: float = 10.0,
                 max_backoff_s: float = 300.0):
        self.store, self.switch, self.load = store, switch, load
        self.etag, self.interval_s, self.max_backoff_s = etag, interval_s, max_backoff_s
        self.last_poll_at: float | None = None
        self.error: str | None = None
        self._failures, self._retry_at, self._failed_etag = 0, 0.0, None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check(self) -> bool:
        """One poll: True when the pointer moved and the server now serves what it names."""
        etag = self.store.head_etag(layout.PROMOTED_POINTER)
        self.last_poll_at = time.time()
        if etag is None or etag == self.etag or (etag == self._failed_etag and time.monotonic() < self._retry_at):
            return False
        pointer, etag = self.store.get_json_versioned(layout.PROMOTED_POINTER, default=None)
        if pointer is None or not pointer.get("model_id"):
            return False
        promoted_at, reason = promoted_move(pointer)
        current = self.switch.current
        try:
            if pointer["model_id"] == current.model_id:  # the pointer was rewritten around the same model
                current.promoted_at, current.reason = promoted_at, reason
            else:
                self.switch.switch(self.load(pointer))
        except Exception as error:  # keep serving the model we have; try the new one again later, backing off
            self._failures, self._failed_etag = self._failures + 1, etag
            self._retry_at = time.monotonic() + min(self.max_backoff_s, self.interval_s * 2 ** self._failures)
            self.error = f"loading {pointer['model_id']} failed: {type(error).__name__}: {error}"
            self.switch.log(f"memo serve: {self.error}; still serving {current.model_id}")
            return False
        self.etag, self.error, self._failures, self._failed_etag = etag, None, 0, None
        return True

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.check()
            except Exception as error:  # the store is unreachable: keep serving, keep polling
                self.error = f"polling the promoted pointer failed: {type(error).__name__}: {error}"

    def start(self) -> "PointerWatcher":
        self._thread = threading.Thread(target=self._loop, name="pointer-watcher", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def describe(self) -> dict:
        return {"interval_s": self.interval_s, "pointer_etag": self.etag, "last_poll_at": self.last_poll_at, "error": self.error}
