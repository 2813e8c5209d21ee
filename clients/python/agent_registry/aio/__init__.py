"""The asyncio flavour: ``Client``, ``Keeper`` and ``WatchCache`` with the blocking names and
rules, their calls ``async`` (on ``grpc.aio``); the plain data and ``card_digest`` are the
blocking package's, re-exported."""

from .._backoff import Backoff
from .._card import card_digest
from .._errors import RegistryError
from .._types import (
    Agent,
    Card,
    CardVersion,
    Instance,
    LiveInstance,
    PublishedCard,
    SearchPage,
    SearchResult,
    Skill,
    StoredCard,
    WatchEvent,
)
from ._cache import WatchCache
from ._client import Client
from ._keeper import Keeper

__all__ = [
    "Agent",
    "Backoff",
    "Card",
    "CardVersion",
    "Client",
    "Instance",
    "Keeper",
    "LiveInstance",
    "PublishedCard",
    "RegistryError",
    "SearchPage",
    "SearchResult",
    "Skill",
    "StoredCard",
    "WatchCache",
    "WatchEvent",
    "card_digest",
]
