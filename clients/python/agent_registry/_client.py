"""The blocking client: register, deregister, get, discover (every page), a resuming watch."""

from __future__ import annotations

import threading
import time
from typing import Iterator, List, Mapping, Optional, Sequence, Tuple

import grpc

from agentregistry.v1 import discovery_pb2, discovery_pb2_grpc, registry_pb2, registry_pb2_grpc

from ._common import Connection, discover_request, register_request
from ._core import WatchState
from ._errors import RegistryError
from ._types import Instance, WatchEvent


class Client:
    """A connection to one registry (``"host:port"``, ``"http://host:port"`` or ``"https://…"``)."""

    def __init__(self, target: str, *, token=None, token_file=None, tls_ca=None, tls_cert=None, tls_key=None):
        self._conn = Connection(
            target, token=token, token_file=token_file, tls_ca=tls_ca, tls_cert=tls_cert, tls_key=tls_key
        )
        self._channel = self._conn.channel(grpc)
        self._registry = registry_pb2_grpc.RegistryServiceStub(self._channel)
        self._discovery = discovery_pb2_grpc.DiscoveryServiceStub(self._channel)

    # -- calls ---------------------------------------------------------------------------------

    def _call(self, method, request, timeout=30.0):
        try:
            return method(request, metadata=self._conn.metadata(), timeout=timeout)
        except grpc.RpcError as e:
            raise RegistryError.from_rpc(e) from None

    def register_with_interval(self, namespace: str, logical_id: str, **fields) -> Tuple[Instance, float]:
        """Like :meth:`register`, with the heartbeat interval the registry advised (seconds)."""
        r = self._call(self._registry.Register, register_request(namespace, logical_id, **fields))
        return Instance.from_proto(r.instance), r.heartbeat_interval.ToTimedelta().total_seconds()

    def register(self, namespace: str = "default", logical_id: str = "", **fields) -> Instance:
        """Registers an instance (or, given the ``instance_id`` of one alive, renews it).
        ``fields``: ``agent_type``, ``version``, ``endpoint``, ``capabilities``, ``labels``,
        ``lease_ttl`` (seconds), ``instance_id``, ``ready`` (default True)."""
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
