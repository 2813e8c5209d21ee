"""The asyncio client: the blocking client's calls (registry, discovery, catalog), awaited."""

from __future__ import annotations

import asyncio
from typing import AsyncIterator, List, Mapping, Optional, Sequence, Tuple

import grpc
from grpc import aio

from agentregistry.v1 import (
    catalog_pb2,
    catalog_pb2_grpc,
    discovery_pb2,
    discovery_pb2_grpc,
    registry_pb2,
    registry_pb2_grpc,
)

from .._card import CardInput, card_proto
from .._common import Connection, discover_request, register_requests, search_request, sends_card_after
from .._core import WatchState
from .._errors import RegistryError
from .._types import Agent, CardVersion, Instance, PublishedCard, SearchPage, SearchResult, StoredCard, WatchEvent


class Client:
    """A connection to one registry (``"host:port"``, ``"http://host:port"`` or ``"https://…"``);
    create it inside a running event loop."""

    def __init__(self, target: str, *, token=None, token_file=None, tls_ca=None, tls_cert=None, tls_key=None):
        self._conn = Connection(
            target, token=token, token_file=token_file, tls_ca=tls_ca, tls_cert=tls_cert, tls_key=tls_key
        )
        self._channel = self._conn.channel(aio)
        self._registry = registry_pb2_grpc.RegistryServiceStub(self._channel)
        self._discovery = discovery_pb2_grpc.DiscoveryServiceStub(self._channel)
        self._catalog = catalog_pb2_grpc.CatalogServiceStub(self._channel)

    async def _call(self, method, request, timeout=30.0):
        try:
            return await method(request, metadata=self._conn.metadata(), timeout=timeout)
        except grpc.RpcError as e:
            raise RegistryError.from_rpc(e) from None

    async def register_with_interval(self, namespace: str, logical_id: str, **fields) -> Tuple[Instance, float]:
        first, with_card = register_requests(namespace, logical_id, **fields)
        try:
            r = await self._call(self._registry.Register, first)
        except RegistryError as e:
            if not sends_card_after(e, with_card):
                raise
            r = await self._call(self._registry.Register, with_card)
        return Instance.from_proto(r.instance), r.heartbeat_interval.ToTimedelta().total_seconds()

    async def register(self, namespace: str = "default", logical_id: str = "", **fields) -> Instance:
        """The blocking ``Client.register``'s arguments (``agent_type``, ``version``,
        ``endpoint``, ``capabilities``, ``labels``, ``lease_ttl``, ``instance_id``, ``ready``,
        ``card``, ``card_kind``, ``card_digest``); a card goes by digest first, as there."""
        inst, _ = await self.register_with_interval(namespace, logical_id, **fields)
        return inst

    async def deregister(self, instance_id: str, reason: str = "", *, timeout: float = 30.0) -> Instance:
        req = registry_pb2.DeregisterRequest(instance_id=instance_id, reason=reason)
        return Instance.from_proto((await self._call(self._registry.Deregister, req, timeout)).instance)

    async def get(self, instance_id: str) -> Instance:
        req = discovery_pb2.GetInstanceRequest(instance_id=instance_id)
        return Instance.from_proto((await self._call(self._discovery.GetInstance, req)).instance)

    async def discover(
        self,
        namespace: str,
        *,
        view: str = "active",
        logical_ids: Sequence[str] = (),
        agent_type: Optional[str] = None,
        capabilities: Sequence[str] = (),
        labels: Optional[Mapping[str, str]] = None,
    ) -> List[Instance]:
        out: List[Instance] = []
        token = ""
        while True:
            req = discover_request(namespace, view, logical_ids, agent_type, capabilities, labels, token)
            page = await self._call(self._discovery.Discover, req)
            out.extend(Instance.from_proto(i) for i in page.instances)
            if not page.next_page_token:
                return out
            token = page.next_page_token

    async def search_agents(
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
        """One page, as the blocking ``search_agents``."""
        req = search_request(
            namespace, query, skills, tags, input_modes, output_modes, kinds, include_offline, page_size, page_token
        )
        return SearchPage.from_proto(await self._call(self._catalog.SearchAgents, req))

    async def search_all_agents(self, namespace: str, query: str = "", **filters) -> AsyncIterator[SearchResult]:
        """Every result of ``search_agents`` (same arguments), page after page."""
        token = filters.pop("page_token", "")
        while True:
            page = await self.search_agents(namespace, query, page_token=token, **filters)
            for result in page.results:
                yield result
            if not page.next_page_token:
                return
            token = page.next_page_token

    async def get_agent(self, namespace: str, logical_id: str) -> Agent:
        req = catalog_pb2.GetAgentRequest(namespace=namespace, logical_id=logical_id)
        return Agent.from_proto((await self._call(self._catalog.GetAgent, req)).agent)

    async def publish_card(
        self, namespace: str, logical_id: str, card: CardInput, kind: str = "a2a"
    ) -> PublishedCard:
        req = catalog_pb2.PublishCardRequest(namespace=namespace, logical_id=logical_id, card=card_proto(card, kind))
        r = await self._call(self._catalog.PublishCard, req)
        return PublishedCard(digest=r.digest, agent=Agent.from_proto(r.agent))

    async def get_card(
        self, digest: str = "", *, namespace: str = "", logical_id: str = "", instance_id: str = ""
    ) -> StoredCard:
        req = catalog_pb2.GetCardRequest(
            digest=digest, namespace=namespace, logical_id=logical_id, instance_id=instance_id
        )
        return StoredCard.from_proto((await self._call(self._catalog.GetCard, req)).card)

    async def list_card_versions(self, namespace: str, logical_id: str) -> List[CardVersion]:
        req = catalog_pb2.ListCardVersionsRequest(namespace=namespace, logical_id=logical_id)
        return [CardVersion.from_proto(v) for v in (await self._call(self._catalog.ListCardVersions, req)).versions]

    async def watch(
        self,
        namespace: str,
        *,
        logical_ids: Sequence[str] = (),
        agent_type: Optional[str] = None,
        capabilities: Sequence[str] = (),
        labels: Optional[Mapping[str, str]] = None,
        start_revision: int = 0,
    ) -> AsyncIterator[WatchEvent]:
        """The blocking ``watch``'s events, as an async iterator (cancel the task to end it)."""
        state = WatchState(namespace, logical_ids, agent_type, capabilities, labels, start_revision)
        while True:
            call = self._discovery.Watch(state.request(), metadata=self._conn.metadata())
            try:
                async for msg in call:
                    for event in state.events(msg):
                        yield event
                reset = state.ended()
                if reset is not None:
                    yield reset
            except grpc.RpcError as e:
                reset = state.failed(RegistryError.from_rpc(e))
                if reset is not None:
                    yield reset
                    continue
            finally:
                call.cancel()
            await asyncio.sleep(state.backoff.next_wait())

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()
