"""Plain data the library hands out instead of generated messages: instances and watch events,
and the catalog's cards, agents, search results and card versions."""

from __future__ import annotations

import datetime as _dt
import json as _json
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from agentregistry.v1 import catalog_pb2, types_pb2

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
# A card's kind, as the library takes and gives it (UNSPECIFIED is read as A2A).
KIND_NAME = {types_pb2.CARD_KIND_UNSPECIFIED: "a2a", types_pb2.CARD_KIND_A2A: "a2a", types_pb2.CARD_KIND_MCP: "mcp"}
_STATE = {catalog_pb2.AGENT_STATE_LIVE: "LIVE", catalog_pb2.AGENT_STATE_NO_LIVE_INSTANCES: "NO_LIVE_INSTANCES"}


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
    card_digest: str = ""

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
            card_digest=m.card_digest,
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


@dataclass(frozen=True)
class Card:
    """A card as the registry keeps it: ``kind`` (``"a2a"`` or ``"mcp"``) and ``json``, the
    exact text it was given; ``data`` parses it (a new dict each time)."""

    kind: str
    json: str

    @property
    def data(self) -> Dict[str, Any]:
        return _json.loads(self.json)

    @classmethod
    def from_proto(cls, m) -> "Card":
        return cls(kind=KIND_NAME.get(m.kind, "a2a"), json=m.json)


@dataclass(frozen=True)
class Skill:
    """One skill of a card (``input_modes`` / ``output_modes`` empty: the card's defaults)."""

    id: str
    name: str = ""
    description: str = ""
    tags: List[str] = field(default_factory=list)
    examples: List[str] = field(default_factory=list)
    input_modes: List[str] = field(default_factory=list)
    output_modes: List[str] = field(default_factory=list)

    @classmethod
    def from_proto(cls, m) -> "Skill":
        return cls(
            id=m.id, name=m.name, description=m.description, tags=list(m.tags), examples=list(m.examples),
            input_modes=list(m.input_modes), output_modes=list(m.output_modes),
        )


@dataclass(frozen=True)
class LiveInstance:
    """A live instance of an agent, and the digest of the card it serves."""

    instance_id: str
    endpoint: str = ""
    version: str = ""
    card_digest: str = ""
    started_at: Optional[_dt.datetime] = None
    lease_expires_at: Optional[_dt.datetime] = None

    @classmethod
    def from_proto(cls, m) -> "LiveInstance":
        return cls(
            instance_id=m.instance_id, endpoint=m.endpoint, version=m.version, card_digest=m.card_digest,
            started_at=_time(m.started_at), lease_expires_at=_time(m.lease_expires_at),
        )


@dataclass(frozen=True)
class Agent:
    """One agent (a namespace and logical id with a card): its current card, read (``name``,
    ``skills``, …) and, from ``get_agent`` and ``publish_card``, whole (``card``; ``None`` in
    search results); ``state`` is ``"LIVE"`` or ``"NO_LIVE_INSTANCES"``."""

    namespace: str
    logical_id: str
    kind: str
    digest: str
    name: str = ""
    description: str = ""
    version: str = ""
    skills: List[Skill] = field(default_factory=list)
    default_input_modes: List[str] = field(default_factory=list)
    default_output_modes: List[str] = field(default_factory=list)
    state: str = "UNSPECIFIED"
    live_count: int = 0
    live_instances: List[LiveInstance] = field(default_factory=list)
    revision: int = 0
    published_at: Optional[_dt.datetime] = None
    card: Optional[Card] = None

    @classmethod
    def from_proto(cls, m) -> "Agent":
        return cls(
            namespace=m.namespace,
            logical_id=m.logical_id,
            kind=KIND_NAME.get(m.kind, "a2a"),
            digest=m.digest,
            name=m.name,
            description=m.description,
            version=m.version,
            skills=[Skill.from_proto(s) for s in m.skills],
            default_input_modes=list(m.default_input_modes),
            default_output_modes=list(m.default_output_modes),
            state=_STATE.get(m.state, "UNSPECIFIED"),
            live_count=m.live_count,
            live_instances=[LiveInstance.from_proto(i) for i in m.live_instances],
            revision=m.revision,
            published_at=_time(m.published_at),
            card=Card.from_proto(m.card) if m.HasField("card") else None,
        )


@dataclass(frozen=True)
class SearchResult:
    """An agent a search found, its BM25 ``score`` (0 without a query) and the ids of the skills
    the query or a skill filter matched."""

    agent: Agent
    score: float = 0.0
    matched_skills: List[str] = field(default_factory=list)


@dataclass(frozen=True)
class SearchPage:
    """One page of a search; ``next_page_token`` is empty on the last; ``revision`` is the one
    the page was read at."""

    results: List[SearchResult]
    next_page_token: str = ""
    revision: int = 0

    @classmethod
    def from_proto(cls, m) -> "SearchPage":
        results = [SearchResult(Agent.from_proto(r.agent), r.score, list(r.matched_skills)) for r in m.results]
        return cls(results=results, next_page_token=m.next_page_token, revision=m.revision)


@dataclass(frozen=True)
class StoredCard:
    """A card as stored for an agent, under its ``digest``."""

    namespace: str
    logical_id: str
    digest: str
    card: Card
    published_at: Optional[_dt.datetime] = None
    revision: int = 0

    @classmethod
    def from_proto(cls, m) -> "StoredCard":
        return cls(
            namespace=m.namespace, logical_id=m.logical_id, digest=m.digest, card=Card.from_proto(m.card),
            published_at=_time(m.published_at), revision=m.revision,
        )


@dataclass(frozen=True)
class PublishedCard:
    """What ``publish_card`` did: the ``digest`` the card is stored under, and the agent as it
    now is (its current card may be a live instance's, not the one published)."""

    digest: str
    agent: Agent


@dataclass(frozen=True)
class CardVersion:
    """One version of an agent's card kept by the registry; ``current`` when it is the agent's
    current card; the retained instances serving it, and how many are live."""

    digest: str
    kind: str
    name: str = ""
    version: str = ""
    published_at: Optional[_dt.datetime] = None
    revision: int = 0
    instance_count: int = 0
    live_count: int = 0
    current: bool = False

    @classmethod
    def from_proto(cls, m) -> "CardVersion":
        return cls(
            digest=m.digest, kind=KIND_NAME.get(m.kind, "a2a"), name=m.name, version=m.version,
            published_at=_time(m.published_at), revision=m.revision, instance_count=m.instance_count,
            live_count=m.live_count, current=m.current,
        )
