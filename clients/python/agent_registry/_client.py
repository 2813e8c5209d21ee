"""The blocking client: register (a card by digest first), deregister, get, discover (every page),
a resuming watch, and the catalog: search agents, get an agent, publish and read cards."""

from __future__ import annotations

import threading
import time
from typing import Iterator, List, Mapping, Optional, Sequence, Tuple

import grpc

from agentregistry.v1 import (
    catalog_pb2,
    catalog_pb2_grpc,
    discovery_pb2,
    discovery_pb2_grpc,
    registry_pb2,
    registry_pb2_grpc,
)

from ._card import CardInput, card_proto
from ._common import Connection, discover_request, register_requests, search_request, sends_card_after
from ._core import WatchState
from ._errors import RegistryError
from ._types import Agent, CardVersion, Instance, PublishedCard, SearchPage, SearchResult, StoredCard, WatchEvent


class Client:
    """A connection to one registry (``"host:port"``, ``"http://host:port"`` or ``"https://…"``)."""

    def __init__(self, target: str, *, token=None, token_file=None, tls_ca=None, tls_cert=None, tls_key=None):
        self._conn = Connection(
            target, token=token, token_file=token_file, tls_ca=tls_ca, tls_cert=tls_cert, tls_key=tls_key
        )
        self._channel = self._conn.channel(grpc)
        self._registry = registry_pb2_grpc.RegistryServiceStub(self._channel)
        self._discovery = discovery_pb2_grpc.DiscoveryServiceStub(self._channel)
        self._catalog = catalog_pb2_grpc.CatalogServiceStub(self._channel)

    # -- calls ---------------------------------------------------------------------------------

    def _call(self, method, request, timeout=30.0):
        try:
            return method(request, metadata=self._conn.metadata(), timeout=timeout)
        except grpc.RpcError as e:
            raise RegistryError.from_rpc(e) from None

    def register_with_interval(self, namespace: str, logical_id: str, **fields) -> Tuple[Instance, float]:
        """Like :meth:`register`, with the heartbeat interval the registry advised (seconds)."""
        first, with_card = register_requests(namespace, logical_id, **fields)
        try:
            r = self._call(self._registry.Register, first)
        except RegistryError as e:
            if not sends_card_after(e, with_card):
                raise
            r = self._call(self._registry.Register, with_card)
        return Instance.from_proto(r.instance), r.heartbeat_interval.ToTimedelta().total_seconds()

    def register(self, namespace: str = "default", logical_id: str = "", **fields) -> Instance:
        """Registers an instance (or, given the ``instance_id`` of one alive, renews it).
        ``fields``: ``agent_type``, ``version``, ``endpoint``, ``capabilities``, ``labels``,
        ``lease_ttl`` (seconds), ``instance_id``, ``ready`` (default True); ``card`` (the
        card this instance serves: a dict, or JSON text sent byte for byte) and ``card_kind``
        (``"a2a"``, the default, or ``"mcp"``), or ``card_digest`` (a card the registry holds).
        A card is named by its digest first and its bytes sent only if the registry lacks it."""
        return self.register_with_interval(namespace, logical_id, **fields)[0]

    def deregister(self, instance_id: str, reason: str = "", *, timeout: float = 30.0) -> Instance:
        req = registry_pb2.DeregisterRequest(instance_id=instance_id, reason=reason)
        return Instance.from_proto(self._call(self._registry.Deregister, req, timeout).instance)

    def get(self, instance_id: str) -> Instance:
        req = discovery_pb2.GetInstanceRequest(instance_id=instance_id)
        return Instance.from_proto(self._call(self._discovery.GetInstance, req).instance)

    def discover(
        self,
        namespace: str,
        *,
        view: str = "active",
        logical_ids: Sequence[str] = (),
        agent_type: Optional[str] = None,
        capabilities: Sequence[str] = (),
        labels: Optional[Mapping[str, str]] = None,
    ) -> List[Instance]:
        """Every matching instance, across all pages."""
        out: List[Instance] = []
        token = ""
        while True:
            req = discover_request(namespace, view, logical_ids, agent_type, capabilities, labels, token)
            page = self._call(self._discovery.Discover, req)
            out.extend(Instance.from_proto(i) for i in page.instances)
            if not page.next_page_token:
                return out
            token = page.next_page_token

    def search_agents(
        self,
        namespace: str,
        query: str = "",
        *,
        skills: Sequence[str] = (),
        tags: Sequence[str] = (),
        input_modes: Sequence[str] = (),
        output_modes: Sequence[str] = (),
        kinds: Sequence[str] = (),
        include_offline: bool = False,
        page_size: int = 0,
        page_token: str = "",
    ) -> SearchPage:
        """One page of the agents of ``namespace`` that ``query`` (free text, BM25-ranked; empty:
        all, by logical id) and the filters select: every one of ``skills`` and ``tags``, any
        of ``input_modes``, ``output_modes`` and ``kinds`` (``"a2a"``, ``"mcp"``); live agents
        only unless ``include_offline``. ``page_size`` 0 means 100."""
        req = search_request(
            namespace, query, skills, tags, input_modes, output_modes, kinds, include_offline, page_size, page_token
        )
        return SearchPage.from_proto(self._call(self._catalog.SearchAgents, req))

    def search_all_agents(self, namespace: str, query: str = "", **filters) -> Iterator[SearchResult]:
        """Every result of :meth:`search_agents` (same arguments), page after page."""
        token = filters.pop("page_token", "")
        while True:
            page = self.search_agents(namespace, query, page_token=token, **filters)
            yield from page.results
            if not page.next_page_token:
                return
            token = page.next_page_token

    def get_agent(self, namespace: str, logical_id: str) -> Agent:
        """One agent: its current card (``agent.card``, byte for byte), state and live instances."""
        req = catalog_pb2.GetAgentRequest(namespace=namespace, logical_id=logical_id)
        return Agent.from_proto(self._call(self._catalog.GetAgent, req).agent)

    def publish_card(self, namespace: str, logical_id: str, card: CardInput, kind: str = "a2a") -> PublishedCard:
        """Stores ``card`` for the agent ahead of any instance (again: a new version)."""
        req = catalog_pb2.PublishCardRequest(namespace=namespace, logical_id=logical_id, card=card_proto(card, kind))
        r = self._call(self._catalog.PublishCard, req)
        return PublishedCard(digest=r.digest, agent=Agent.from_proto(r.agent))

    def get_card(
        self, digest: str = "", *, namespace: str = "", logical_id: str = "", instance_id: str = ""
    ) -> StoredCard:
        """A card by ``digest`` (of any agent the caller may read, or of the one named), or the
        card the instance ``instance_id`` serves."""
        req = catalog_pb2.GetCardRequest(
            digest=digest, namespace=namespace, logical_id=logical_id, instance_id=instance_id
        )
        return StoredCard.from_proto(self._call(self._catalog.GetCard, req).card)

    def list_card_versions(self, namespace: str, logical_id: str) -> List[CardVersion]:
        """Every version of the agent's card still kept, newest first."""
        req = catalog_pb2.ListCardVersionsRequest(namespace=namespace, logical_id=logical_id)
        return [CardVersion.from_proto(v) for v in self._call(self._catalog.ListCardVersions, req).versions]

    def watch(
        self,
        namespace: str,
        *,
        logical_ids: Sequence[str] = (),
        agent_type: Optional[str] = None,
        capabilities: Sequence[str] = (),
        labels: Optional[Mapping[str, str]] = None,
        start_revision: int = 0,
        stop=None,
    ) -> Iterator[WatchEvent]:
        """Changes of a filter, for ever: from ``start_revision`` (0: the current set first, then
        a bookmark). A broken stream resumes after the last revision seen; when that revision is
        gone (``OUT_OF_RANGE``) the watch re-lists, announced by a ``RESET`` event. ``stop`` (a
        ``threading.Event``) ends it."""
        state = WatchState(namespace, logical_ids, agent_type, capabilities, labels, start_revision)
        current = []
        if stop is not None:
            # The stream in flight, waiting for its next message, ends as soon as ``stop`` is set.
            threading.Thread(target=lambda: (stop.wait(), current and current[-1].cancel()), daemon=True).start()
        while stop is None or not stop.is_set():
            call = self._discovery.Watch(state.request(), metadata=self._conn.metadata())
            current[:] = [call]
            if stop is not None and stop.is_set():
                call.cancel()
            try:
                for msg in call:
                    yield from state.events(msg)
                    if stop is not None and stop.is_set():
                        call.cancel()
                        return
                reset = state.ended()
                if reset is not None:
                    yield reset
            except grpc.RpcError as e:
                if stop is not None and stop.is_set():
                    return
                reset = state.failed(RegistryError.from_rpc(e))
                if reset is not None:
                    yield reset
                    continue
            time.sleep(state.backoff.next_wait())

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
