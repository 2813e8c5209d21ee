"""The asyncio flavour: ``Client``, ``Keeper`` and ``WatchCache`` with the blocking names and
rules, their calls ``async`` (on ``grpc.aio``)."""

from .._backoff import Backoff
from .._errors import RegistryError
from .._types import Instance, WatchEvent
from ._cache import WatchCache
from ._client import Client
from ._keeper import Keeper

__all__ = ["Backoff", "Client", "Instance", "Keeper", "RegistryError", "WatchCache", "WatchEvent"]
