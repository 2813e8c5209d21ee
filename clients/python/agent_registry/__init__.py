"""agent-registry's Python client: register, heartbeat, discover and watch agents, and find them
by what they can do (their cards).

``Client`` makes calls, ``Keeper`` keeps one agent registered (resuming its instance id across
disconnects and registry restarts), ``WatchCache`` keeps a local view of a filter current;
``card_digest`` is the digest the registry gives a card. The same names, ``async``, are in
:mod:`agent_registry.aio`.
"""

from ._backoff import Backoff
from ._cache import WatchCache
from ._card import card_digest
from ._client import Client
from ._errors import RegistryError
from ._keeper import Keeper
from ._types import (
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
