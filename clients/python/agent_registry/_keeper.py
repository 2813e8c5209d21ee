"""The keeper: keeps one agent registered and its heartbeat stream open, in a thread of its own,
with the Rust keeper's rules — resume the same instance id across disconnects and registry
restarts, full-jitter back-off (100 ms → 10 s), register anew on REREGISTER, follow the advised
interval (±10 %) and DRAIN, deregister on stop. The rules are in ``_core.KeeperCore``."""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Callable, Optional

import grpc

from ._backoff import Backoff, jittered
from ._core import DEREGISTER_BUDGET, KeeperCore
from ._errors import RETRYABLE, RegistryError

log = logging.getLogger("agent_registry")


class Keeper(KeeperCore):
    """``Keeper(client, *, namespace, logical_id, agent_type=None, version=None, endpoint=None,
    capabilities=(), labels=None, lease_ttl=None, ready=True, card=None, card_kind="a2a",
    card_digest=None, on_drain=None, on_reregistered=None)``; ``start()``, ``stop()``,
    ``set_status()``, a context manager. ``card`` is registered as ``Client.register`` does it:
    by digest first, its bytes only when the registry lacks them."""

    def __init__(self, client, **config):
        super().__init__(client, **config)
        self._lock = threading.Lock()
        self.changed = threading.Condition(self._lock)
        self._stopping = threading.Event()
        # The current stream's wake-up and end.
        self._wake: "queue.Queue" = queue.Queue()
        self._ended = threading.Event()
        self._call = None
        self._thread: Optional[threading.Thread] = None
        self.drained = threading.Event()
        self.error: Optional[BaseException] = None

    def wait(self, predicate: Callable[["Keeper"], bool], timeout: float = 30.0) -> bool:
        """Waits until ``predicate(self)`` holds (e.g. ``lambda k: k.connected``)."""
        with self.changed:
            return self.changed.wait_for(lambda: predicate(self), timeout)

    def start(self) -> "Keeper":
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"keeper-{self._logical_id}", daemon=True)
            self._thread.start()
        return self

    def set_status(self, status: str) -> None:
        """Reports ALIVE or DRAINING on the stream (the registry persists it before the ack)."""
        self._check(status)
        with self._lock:
            self._wanted = status
        self._wake.put(None)

    def stop(self, reason: str = "agent shutting down", timeout: float = DEREGISTER_BUDGET + 5) -> None:
        """Ends the stream and deregisters (retrying for up to 5 s; an unreachable registry
        leaves the instance to its lease)."""
        self._stop_reason = reason
        self._stopping.set()
        self._ended.set()
        self._wake.put(None)
        call = self._call
        if call is not None:
            call.cancel()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("the keeper did not finish within %.0f s; its instance is left to its lease", timeout)
        if self.error is not None:
            raise self.error

    def __enter__(self) -> "Keeper":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _update(self, **fields) -> None:
        with self.changed:
            for k, v in fields.items():
                setattr(self, "_" + k, v)
            self.changed.notify_all()

    def _run(self) -> None:
        try:
            while not self._stopping.is_set():
                if self._instance_id is None and not self._register_once():
                    continue
                if self._hold() == "reregister":
                    self._update(instance_id=None, connected=False)
                    continue
                self._update(connected=False)
                if self._stopping.wait(self._resume_wait()):
                    break
            if self._instance_id is not None:
                self._deregister()
        except BaseException as e:  # surfaced by stop()
            self.error = e
            log.exception("keeper stopped on an error")
            self._update()

    def _register_once(self) -> bool:
        try:
            inst, interval = self._client.register_with_interval(self._namespace, self._logical_id, **self._fields)
        except RegistryError as e:
            if e.code not in RETRYABLE:
                raise
            log.warning("register failed (%s); retrying", e)
            self._stopping.wait(self._backoff.next_wait())
            return False
        self.drained.clear()
        self._update(**self._registered(inst, interval))
        self._after_registered()
        return True

    def _take_status(self, first: bool) -> Optional[str]:
        with self._lock:
            return self._status_to_send(first)

    def _beats(self, instance_id: str, wake: "queue.Queue", ended: threading.Event):
        """The request side of one stream: a beat now, then one per jittered interval; a status
        set meanwhile goes out at once (and again on the next stream until acknowledged)."""
        status = self._take_status(first=True)
        while not ended.is_set():
            with self._lock:
                beat = self._beat(instance_id, status)
            yield beat
            try:
                wake.get(timeout=jittered(self._interval))
            except queue.Empty:
                pass
            if ended.is_set():
                return
            status = self._take_status(first=False)

    def _hold(self) -> str:
        """One stream: ``"reregister"`` when the registry wants a new registration, else
        ``"resume"`` (keep the id, reconnect after a pause)."""
        wake, ended = queue.Queue(), threading.Event()
        self._wake, self._ended = wake, ended
        if self._stopping.is_set():
            return "resume"
        beats = self._beats(self._instance_id, wake, ended)
        call = self._client._registry.Heartbeat(beats, metadata=self._client._conn.metadata())
        self._call = call
        try:
            for ack in call:
                with self._lock:
                    what, state = self._acked(ack)
                if what == "reregister":
                    log.warning("the registry asked for a new registration: %s", ack.reason)
                    call.cancel()
                    return "reregister"
                self._update(**state)
                if what == "drain":
                    self.drained.set()
                    self._callback(self._on_drain)
            return "resume"
        except grpc.RpcError as e:
            if not self._stopping.is_set():
                log.info("heartbeat stream ended (%s); resuming", e.details())
            return self._stream_error(e)
        finally:
            ended.set()
            wake.put(None)
            self._call = None

    def _deregister(self) -> None:
        deadline = time.monotonic() + DEREGISTER_BUDGET
        pause = Backoff(0.05, 0.5)
        while True:
            try:
                left = max(deadline - time.monotonic(), 0.05)
                self._client.deregister(self._instance_id, self._stop_reason, timeout=left)
                self._update(status="DEAD", connected=False)
                return
            except RegistryError as e:
                left = deadline - time.monotonic()
                if self._deregister_outcome(e, left):
                    return
                time.sleep(min(pause.next_wait(), left))
