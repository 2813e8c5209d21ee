"""Plain data the library hands out instead of generated messages."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from agentregistry.v1 import types_pb2

_STATUS = {
    types_pb2.INSTANCE_STATUS_STARTING: "STARTING",
    types_pb2.INSTANCE_STATUS_ALIVE: "ALIVE",
    types_pb2.INSTANCE_STATUS_DRAINING: "DRAINING",
    types_pb2.INSTANCE_STATUS_DEAD: "DEAD",
}
STATUS_VALUE = {name: value for value, name in _STATUS.items()}
_REASON = {
    types_pb2.DEATH_REASON_DEREGISTERED: "DEREGISTERED",
    types_pb2.DEATH_REASON_LEASE_EXPIRED: "LEASE_EXPIRED",
    types_pb2.DEATH_REASON_EPOCH_SUPERSEDED: "EPOCH_SUPERSEDED",
    types_pb2.DEATH_REASON_EVICTED: "EVICTED",
}


def _time(ts) -> Optional[_dt.datetime]:
    if ts is None or (ts.seconds == 0 and ts.nanos == 0):
        return None
    return ts.ToDatetime(tzinfo=_dt.timezone.utc)


@dataclass(frozen=True)
class Instance:
    """One incarnation of an agent, as the registry holds it (fields named as in the proto)."""

    instance_id: str
    namespace: str
    logical_id: str
    epoch: str
    status: str
    agent_type: str = ""
    version: str = ""
    endpoint: str = ""
    capabilities: List[str] = field(default_factory=list)
    labels: Dict[str, str] = field(default_factory=dict)
    actor_name: str = ""
    node_id: str = ""
    ip_address: str = ""
    pid: int = 0
    lease_ttl: float = 0.0
    started_at: Optional[_dt.datetime] = None
    last_heartbeat: Optional[_dt.datetime] = None
    stopped_at: Optional[_dt.datetime] = None
    death_reason: Optional[str] = None
    revision: int = 0

    @classmethod
    def from_proto(cls, m) -> "Instance":
        return cls(
            instance_id=m.instance_id,
            namespace=m.namespace,
            logical_id=m.logical_id,
            epoch=m.epoch,
            status=_STATUS.get(m.status, "UNSPECIFIED"),
            agent_type=m.agent_type,
            version=m.version,
            endpoint=m.endpoint,
            capabilities=list(m.capabilities),
            labels=dict(m.labels),
            actor_name=m.actor_name,
            node_id=m.node_id,
            ip_address=m.ip_address,
            pid=m.pid,
            lease_ttl=m.lease_ttl.ToTimedelta().total_seconds(),
            started_at=_time(m.started_at),
            last_heartbeat=_time(m.last_heartbeat),
            stopped_at=_time(m.stopped_at),
            death_reason=_REASON.get(m.death_reason),
            revision=m.revision,
        )


@dataclass(frozen=True)
class WatchEvent:
    """One step of a watch.

    ``type`` is ``"PUT"`` (the instance as it now is), ``"DELETE"`` (it died), ``"BOOKMARK"``
    (every change up to ``revision`` has been seen) or ``"RESET"`` (the watch had to re-list:
    what follows up to the next bookmark is the whole current set, so forget what you hold).
    """

    type: str
    revision: int
    instance: Optional[Instance] = None
