"""The logic the blocking and asyncio flavours share, free of I/O: a watch's resume state, a
watch cache's view, and a keeper's state and rules. Each flavour only does the waiting."""

from __future__ import annotations

import logging

from typing import Callable, Dict, List, Mapping, Optional, Sequence

from agentregistry.v1 import discovery_pb2, registry_pb2

from ._backoff import Backoff
from ._card import CardInput, card_proto
from ._common import watch_request
from ._errors import RETRYABLE, RegistryError
from ._types import KIND_NAME, STATUS_VALUE, Instance, WatchEvent

DEREGISTER_BUDGET = 5.0


class WatchState:
    """Where a watch resumes. Until its bookmark a snapshot is not in revision order, so a
    break inside one re-lists; ``OUT_OF_RANGE`` (the revision is compacted) re-lists too."""

    def __init__(self, namespace, logical_ids, agent_type, capabilities, labels, start_revision):
        self._filter = (namespace, logical_ids, agent_type, capabilities, labels)
        self.revision = start_revision
        self.snapshot = start_revision == 0
        self.backoff = Backoff(0.1, 5.0)

    def request(self):
        return watch_request(*self._filter, self.revision)

    def events(self, msg) -> List[WatchEvent]:
        self.backoff.reset()
        out = []
        for e in msg.events:
            if not self.snapshot:
                self.revision = max(self.revision, e.revision)
            kind = "DELETE" if e.type == discovery_pb2.WatchEvent.TYPE_DELETE else "PUT"
            out.append(WatchEvent(kind, e.revision, Instance.from_proto(e.instance)))
        if not msg.events:
            self.revision = max(self.revision, msg.bookmark_revision)
            self.snapshot = False
            out.append(WatchEvent("BOOKMARK", msg.bookmark_revision))
        return out

    def ended(self) -> Optional[WatchEvent]:
        """After a stream the server ended cleanly (it is shutting down): inside a snapshot only
        a re-list is safe, announced by the ``RESET`` returned."""
        if self.snapshot:
            self.revision = 0
            return WatchEvent("RESET", 0)
        return None

    def failed(self, err: RegistryError) -> Optional[WatchEvent]:
        """After a broken stream: a ``RESET`` to yield (then re-list at once), ``None`` to
        resume after a pause; an error that will not pass is raised."""
        if err.code == "OUT_OF_RANGE" or (self.snapshot and err.code in RETRYABLE):
            self.revision, self.snapshot = 0, True
            return WatchEvent("RESET", 0)
        if err.code not in RETRYABLE:
            raise err
        # RESOURCE_EXHAUSTED (too slow) names where to resume; the last revision seen is that
        # place or before it, and the server drops nothing after it.
        return None


class CacheView:
    """Instance id → Instance of one filter; a snapshot is gathered aside and swapped in whole
    at its bookmark."""

    def __init__(self):
        self.items: Dict[str, Instance] = {}
        self._pending: Optional[Dict[str, Instance]] = {}
        self.revision = 0
        self.synced = False

    def apply(self, e: WatchEvent) -> None:
        if e.type == "RESET":
            self._pending = {}
        elif e.type == "BOOKMARK":
            if self._pending is not None:
                self.items, self._pending = self._pending, None
            self.revision = max(self.revision, e.revision)
            self.synced = True
        else:
            target = self._pending if self._pending is not None else self.items
            if e.type == "DELETE":
                target.pop(e.instance.instance_id, None)
            else:
                target[e.instance.instance_id] = e.instance
            if self._pending is None:
                self.revision = max(self.revision, e.revision)


class CacheReadout:
    """What both watch caches expose of their ``_view``."""

    _view: CacheView

    @property
    def revision(self) -> int:
        """The last change applied."""
        return self._view.revision

    @property
    def synced(self) -> bool:
        """A whole snapshot has been applied."""
        return self._view.synced


class KeeperCore:
    """A keeper's configuration, state and rules: what to register, what the stream says, what
    to send. The flavours run it (a thread, a task)."""

    def __init__(
        self,
        client,
        *,
        namespace: str,
        logical_id: str,
        agent_type: Optional[str] = None,
        version: Optional[str] = None,
        endpoint: Optional[str] = None,
        capabilities: Sequence[str] = (),
        labels: Optional[Mapping[str, str]] = None,
        lease_ttl: Optional[float] = None,
        ready: bool = True,
        card: Optional[CardInput] = None,
        card_kind: str = "a2a",
        card_digest: Optional[str] = None,
        on_drain: Optional[Callable] = None,
        on_reregistered: Optional[Callable] = None,
    ):
        self._client = client
        self._namespace, self._logical_id = namespace, logical_id
        self._fields = dict(
            agent_type=agent_type, version=version, endpoint=endpoint, capabilities=capabilities,
            labels=labels, lease_ttl=lease_ttl, ready=ready, card_digest=card_digest,
        )
        if card is not None:
            if card_digest:
                raise ValueError("give card or card_digest, not both")
            # Read once, here: a bad card or kind fails now, and a dict changed later changes
            # nothing. Every registration (a REREGISTER's too) names it by digest first.
            sent = card_proto(card, card_kind)
            self._fields.update(card=sent.json, card_kind=KIND_NAME[sent.kind])
        self._on_drain, self._on_reregistered = on_drain, on_reregistered
        self._instance_id: Optional[str] = None
        self._status: Optional[str] = None
        self._connected = False
        self._registrations = 0
        self._acks = 0
        self._interval = 5.0
        self._seq = 0
        self._wanted: Optional[str] = None
        # A status sent and not yet acknowledged (status, sequence): sent again on a new stream.
        self._unacked: Optional[tuple] = None
        self._lease = 0.0
        self._stop_reason = "agent shutting down"
        self._backoff = Backoff(0.1, 10.0)

    @property
    def instance_id(self) -> Optional[str]:
        return self._instance_id

    @property
    def status(self) -> Optional[str]:
        return self._status

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def registrations(self) -> int:
        """Registrations made (1 unless the registry asked for a new one)."""
        return self._registrations

    @property
    def acks(self) -> int:
        """Beats the registry acknowledged."""
        return self._acks

    @staticmethod
    def _check(status: str) -> None:
        if status not in ("ALIVE", "DRAINING"):
            raise ValueError("status must be ALIVE or DRAINING")

    def _resume_wait(self) -> float:
        """The pause before a stream is opened again: the back-off, capped at a third of the
        lease so a blip cannot outlast it (the Rust keeper's rule)."""
        wait = self._backoff.next_wait()
        return min(wait, max(self._lease / 3, 0.1)) if self._lease else wait

    def _callback(self, f, *args) -> None:
        """Runs a user callback; what it raises is logged, never the keeper's end."""
        if f is None:
            return
        try:
            f(self, *args)
        except Exception:  # noqa: BLE001 - the user's code
            logging.getLogger("agent_registry").exception("keeper callback raised")

    def _registered(self, inst: Instance, interval: float) -> dict:
        """State after a registration; calls ``on_reregistered`` for every one but the first."""
        self._backoff.reset()
        self._interval = interval or self._interval
        self._lease = inst.lease_ttl
        self._unacked = None
        return dict(instance_id=inst.instance_id, status=inst.status, registrations=self._registrations + 1)

    def _after_registered(self) -> None:
        if self._registrations > 1:
            self._callback(self._on_reregistered, self._instance_id)

    def _status_to_send(self, first: bool) -> Optional[str]:
        """A status set since the last beat; on a stream's first beat, else the one still
        unacknowledged (its stream failed before the ack)."""
        wanted, self._wanted = self._wanted, None
        if wanted is None and first and self._unacked is not None:
            wanted = self._unacked[0]
        return wanted

    def _beat(self, instance_id: str, status: Optional[str]) -> registry_pb2.HeartbeatRequest:
        self._seq += 1
        if status:
            self._unacked = (status, self._seq)
        value = STATUS_VALUE[status] if status else 0
        return registry_pb2.HeartbeatRequest(instance_id=instance_id, sequence=self._seq, status=value)

    def _acked(self, ack) -> tuple:
        """What one reply means: ``("reregister", {})``, or ``("drain"|"ack", state)``."""
        self._backoff.reset()
        if ack.heartbeat_interval.seconds or ack.heartbeat_interval.nanos:
            self._interval = ack.heartbeat_interval.ToTimedelta().total_seconds()
        if ack.directive == registry_pb2.DIRECTIVE_REREGISTER:
            return "reregister", {}
        acks = self._acks + (1 if ack.sequence > 0 else 0)
        if ack.directive == registry_pb2.DIRECTIVE_DRAIN:
            return "drain", dict(status="DRAINING", connected=True, acks=acks)
        state = dict(connected=True, acks=acks)
        if self._unacked is not None and ack.sequence >= self._unacked[1]:
            # The registry stored the status before it acknowledged this beat.
            state["status"] = self._unacked[0]
            self._unacked = None
        return "ack", state

    @staticmethod
    def _stream_error(e) -> str:
        """After a stream error: ``"reregister"`` if the instance is not ours to keep."""
        code = e.code().name if e.code() is not None else "UNKNOWN"
        return "reregister" if code == "PERMISSION_DENIED" else "resume"

    @staticmethod
    def _deregister_outcome(e: RegistryError, left: float) -> bool:
        """True when a refused deregister is done with (already dead); raises when it will not
        pass; False to retry."""
        if e.code == "FAILED_PRECONDITION":
            return True
        if e.code not in RETRYABLE or left <= 0:
            raise e
        return False
