"""What the blocking and asyncio clients share: the target, credentials, request building (a
registration with a card: by digest first, the bytes only when the registry lacks them)."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional, Sequence, Tuple

import grpc
from google.protobuf import duration_pb2

from agentregistry.v1 import catalog_pb2, discovery_pb2, registry_pb2

from ._card import CardInput, card_proto, digest_or_none, kind_value
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


def register_requests(
    namespace: str,
    logical_id: str,
    *,
    card: Optional[CardInput] = None,
    card_kind: str = "a2a",
    card_digest: Optional[str] = None,
    **fields,
) -> Tuple[registry_pb2.RegisterRequest, Optional[registry_pb2.RegisterRequest]]:
    """The registration to send, and the one to send instead if the registry answers it
    ``NOT_FOUND`` (``None``: no other). A card is named by its digest first, so a fleet of
    replicas sends its bytes once (the Rust client's rule); a card with no digest to name (not
    one JSON object) goes as it is, for the registry to say what is wrong with it."""
    if card is not None and card_digest:
        raise ValueError("give card or card_digest, not both")
    full = register_request(namespace, logical_id, **fields)
    if card is None:
        full.card_digest = card_digest or ""
        return full, None
    full.card.CopyFrom(card_proto(card, card_kind))
    digest = digest_or_none(full.card.json)
    if digest is None:
        return full, None
    short = registry_pb2.RegisterRequest()
    short.CopyFrom(full)
    short.ClearField("card")
    short.card_digest = digest
    return short, full


def sends_card_after(err: RegistryError, with_card) -> bool:
    """Whether a registration by digest refused with ``err`` is sent again with the card."""
    return with_card is not None and err.code == "NOT_FOUND"


def strings(name: str, values: Sequence[str]) -> list:
    """A sequence of strings; a lone string is refused (it would be read letter by letter)."""
    if isinstance(values, (str, bytes)):
        raise TypeError(f"{name} takes a list of strings, not one string")
    return list(values)


def search_request(
    namespace: str,
    query: str = "",
    skills: Sequence[str] = (),
    tags: Sequence[str] = (),
    input_modes: Sequence[str] = (),
    output_modes: Sequence[str] = (),
    kinds: Sequence[str] = (),
    include_offline: bool = False,
    page_size: int = 0,
    page_token: str = "",
) -> catalog_pb2.SearchAgentsRequest:
    return catalog_pb2.SearchAgentsRequest(
        namespace=namespace,
        query=query,
        skills=strings("skills", skills),
        tags=strings("tags", tags),
        input_modes=strings("input_modes", input_modes),
        output_modes=strings("output_modes", output_modes),
        kinds=[kind_value(k) for k in strings("kinds", kinds)],
        include_offline=include_offline,
        page_size=page_size,
        page_token=page_token,
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

