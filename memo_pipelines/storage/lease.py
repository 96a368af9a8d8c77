"""Leases in the bucket: one object per leased thing, created and renewed with conditional writes, with an expiry so
a holder that died does not block the thing forever."""

import json
import threading
import time
from contextlib import contextmanager

from memo_pipelines.storage.objectstore import ObjectStore, WriteConflict


class LeaseHeld(RuntimeError):
    """Someone else holds an unexpired lease."""


class Lease:
    def __init__(self, store: ObjectStore, key: str, owner: str, ttl_s: float):
        self.store, self.key, self.owner, self.ttl_s = store, key, owner, ttl_s
        self.etag: str | None = None
        self.renewed_at = 0.0
        self.lock = threading.Lock()  # the heartbeat and the holder's own renewals take turns on the ETag
        self.lost: LeaseHeld | None = None  # set when the heartbeat found the lease taken over

    def _body(self) -> bytes:
        now = time.time()
        return json.dumps({"owner": self.owner, "acquired_at": now, "expires_at": now + self.ttl_s}).encode()

    def acquire(self) -> "Lease":
        try:
            self.etag = self.store.put_bytes_if(self.key, self._body(), None)
        except WriteConflict:
            holder, etag = self.store.get_json_versioned(self.key)
            if holder is not None and holder["owner"] != self.owner and holder["expires_at"] > time.time():
                raise LeaseHeld(f"{self.key} is held by {holder['owner']} for {holder['expires_at'] - time.time():.0f} s more") from None
            try:  # expired, ours from an earlier attempt, or released meanwhile: take it over only if nobody else did first
                self.etag = self.store.put_bytes_if(self.key, self._body(), etag)
            except WriteConflict:
                raise LeaseHeld(f"{self.key} was taken by another run at the same moment") from None
        self.renewed_at = time.time()
        return self

    def renew(self, every_s: float | None = None) -> None:
        """Push the expiry out; with every_s, only when the last renewal is older than that."""
        with self.lock:
            if self.lost is not None:
                raise self.lost
            if every_s is not None and time.time() - self.renewed_at < every_s:
                return
            try:
                self.etag = self.store.put_bytes_if(self.key, self._body(), self.etag)
            except WriteConflict:
                raise LeaseHeld(f"{self.key} expired and was taken over by another run; stopping") from None
            self.renewed_at = time.time()

    @contextmanager
    def heartbeat(self, every_s: float):
        """Renew the lease every `every_s` seconds from a thread while the block runs, whatever it is doing (fetching
        models, generating references, uploading, training one job after another); a lease found taken over stops the
        renewals and is raised by the holder's next renew() and at the end of the block."""
        stop = threading.Event()

        def beat():
            while not stop.wait(every_s):
                try:
                    self.renew()
                except LeaseHeld as error:
                    self.lost = error
                    return
                except Exception:  # a store hiccup: the next beat tries again, well within the lease's ttl
                    continue

        thread = threading.Thread(target=beat, name=f"lease-{self.key}", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            stop.set()
            thread.join()
        if self.lost is not None:
            raise self.lost

    def release(self) -> None:
        """Delete the lease only while it is still the one this holder wrote (a conditional delete): a lease that
        expired and was taken over by another run, even at this moment, stays that run's."""
        if self.etag is not None:
            self.store.delete_if(self.key, self.etag)
        self.etag = None

    def __enter__(self) -> "Lease":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
