"""The asyncio client: the blocking client's calls, awaited."""

from __future__ import annotations

import asyncio
from typing import AsyncIterator, List, Mapping, Optional, Sequence, Tuple

import grpc
from grpc import aio

from agentregistry.v1 import discovery_pb2, discovery_pb2_grpc, registry_pb2, registry_pb2_grpc

from .._common import Connection, discover_request, register_request
from .._core import WatchState
from .._errors import RegistryError
from .._types import Instance, WatchEvent


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

    async def _call(self, method, request, timeout=30.0):
        try:
            return await method(request, metadata=self._conn.metadata(), timeout=timeout)
        except grpc.RpcError as e:
            raise RegistryError.from_rpc(e) from None

    async def register_with_interval(self, namespace: str, logical_id: str, **fields) -> Tuple[Instance, float]:
        r = await self._call(self._registry.Register, register_request(namespace, logical_id, **fields))
        return Instance.from_proto(r.instance), r.heartbeat_interval.ToTimedelta().total_seconds()

    async def register(self, namespace: str = "default", logical_id: str = "", **fields) -> Instance:
        """The blocking ``Client.register``'s arguments (``agent_type``, ``version``,
        ``endpoint``, ``capabilities``, ``labels``, ``lease_ttl``, ``instance_id``, ``ready``)."""
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
