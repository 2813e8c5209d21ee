"""What the blocking and asyncio clients share: the target, credentials, request building."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional, Sequence, Tuple

import grpc
from google.protobuf import duration_pb2

from agentregistry.v1 import discovery_pb2, registry_pb2

from ._errors import RegistryError

VIEWS = {
    "active": discovery_pb2.DISCOVER_VIEW_ACTIVE,
    "live": discovery_pb2.DISCOVER_VIEW_LIVE,
    "all": discovery_pb2.DISCOVER_VIEW_ALL,
}


def _read(path: Optional[str]) -> Optional[bytes]:
    return Path(path).read_bytes() if path else None


class Connection:
    """The address and credentials of a registry: TLS (and mutual TLS) as the Rust client does
    it, a bearer token given or read from a file (re-read when it changes)."""

    def __init__(self, target: str, *, token=None, token_file=None, tls_ca=None, tls_cert=None, tls_key=None):
        tls = bool(tls_ca or tls_cert or target.startswith("https://"))
        for scheme in ("http://", "https://"):
            if target.startswith(scheme):
                target = target[len(scheme):]
        self.target = target.rstrip("/")
        if bool(tls_cert) != bool(tls_key):
            raise ValueError("tls_cert and tls_key go together")
        self.credentials = (
            grpc.ssl_channel_credentials(
                root_certificates=_read(tls_ca),
                private_key=_read(tls_key),
                certificate_chain=_read(tls_cert),
            )
            if tls
            else None
        )
        if token and token_file:
            raise ValueError("give token or token_file, not both")
        self._token = token
        self._token_file = Path(token_file) if token_file else None
        self._file_state: Tuple[float, str] = (-1.0, "")

    def channel(self, module=grpc):
        """A channel to the target (``module``: ``grpc`` or ``grpc.aio``)."""
        options = [("grpc.keepalive_time_ms", 30_000)]
        if self.credentials is not None:
            return module.secure_channel(self.target, self.credentials, options)
        return module.insecure_channel(self.target, options)

    def metadata(self) -> Tuple[Tuple[str, str], ...]:
        token = self._token
        if self._token_file is not None:
            try:
                mtime = self._token_file.stat().st_mtime
                if mtime != self._file_state[0]:
                    self._file_state = (mtime, self._token_file.read_text().strip())
            except OSError as e:
                # Being rewritten, or not mounted yet: worth another try.
                raise RegistryError("UNAVAILABLE", f"token_file {self._token_file}: {e}") from None
            token = self._file_state[1]
        return (("authorization", f"Bearer {token}"),) if token else ()


def duration(seconds: Optional[float]):
    if seconds is None:
        return None
    d = duration_pb2.Duration()
    d.FromNanoseconds(int(seconds * 1e9))
    return d


def register_request(
    namespace: str,
    logical_id: str,
    *,
    agent_type: Optional[str] = None,
    version: Optional[str] = None,
    endpoint: Optional[str] = None,
    capabilities: Sequence[str] = (),
    labels: Optional[Mapping[str, str]] = None,
    lease_ttl: Optional[float] = None,
    instance_id: Optional[str] = None,
    ready: bool = True,
    actor_name: Optional[str] = None,
    node_id: Optional[str] = None,
    ip_address: Optional[str] = None,
    pid: int = 0,
) -> registry_pb2.RegisterRequest:
    return registry_pb2.RegisterRequest(
        namespace=namespace,
        logical_id=logical_id,
        agent_type=agent_type or "",
        version=version or "",
        endpoint=endpoint or "",
        capabilities=list(capabilities),
        labels=dict(labels or {}),
        lease_ttl=duration(lease_ttl),
        instance_id=instance_id or "",
        ready=ready,
        actor_name=actor_name or "",
        node_id=node_id or "",
        ip_address=ip_address or "",
        pid=pid,
    )


def filter_fields(namespace, logical_ids=(), agent_type=None, capabilities=(), labels=None) -> dict:
    """The filter fields Discover and Watch share, as the proto names them."""
    return dict(
        namespace=namespace,
        logical_ids=list(logical_ids),
        agent_type=agent_type or "",
        capabilities=list(capabilities),
        label_selector=dict(labels or {}),
    )


def discover_request(namespace, view, logical_ids, agent_type, capabilities, labels, token):
    if view not in VIEWS:
        raise ValueError(f"view must be one of {sorted(VIEWS)}")
    fields = filter_fields(namespace, logical_ids, agent_type, capabilities, labels)
    return discovery_pb2.DiscoverRequest(**fields, view=VIEWS[view], page_size=1000, page_token=token)


def watch_request(namespace, logical_ids, agent_type, capabilities, labels, start_revision):
    fields = filter_fields(namespace, logical_ids, agent_type, capabilities, labels)
    return discovery_pb2.WatchRequest(**fields, start_revision=start_revision)

