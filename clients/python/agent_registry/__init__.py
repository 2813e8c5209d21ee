"""agent-registry's Python client: register, heartbeat, discover and watch agents.

``Client`` makes calls, ``Keeper`` keeps one agent registered (resuming its instance id across
disconnects and registry restarts), ``WatchCache`` keeps a local view of a filter current. The
same names, ``async``, are in :mod:`agent_registry.aio`.
"""

from ._backoff import Backoff
from ._cache import WatchCache
from ._client import Client
from ._errors import RegistryError
from ._keeper import Keeper
from ._types import Instance, WatchEvent

__all__ = ["Backoff", "Client", "Instance", "Keeper", "RegistryError", "WatchCache", "WatchEvent"]
