"""The asyncio watch cache: the blocking cache's view, kept by a task."""

from __future__ import annotations

import asyncio
from typing import Iterator, Mapping

from ._wait import wait_on
from .._core import CacheReadout, CacheView
from .._types import Instance
from ._client import Client


class WatchCache(CacheReadout, Mapping[str, Instance]):
    """The blocking ``WatchCache``, kept by a task; create it in a running loop."""

    def __init__(self, client: Client, namespace: str, **filters):
        """``filters``: the blocking ``WatchCache``'s (``logical_ids``, ``agent_type``,
        ``capabilities``, ``labels``)."""
        self._client = client
        self._filter = filters
        self._namespace = namespace
        self._view = CacheView()
        self._changed = asyncio.Condition()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        async for e in self._client.watch(self._namespace, **self._filter):
            self._view.apply(e)
            async with self._changed:
                self._changed.notify_all()

    async def wait_for(self, predicate, timeout: float = 30.0) -> bool:
        return await wait_on(self._changed, lambda: predicate(self), timeout)

    def __getitem__(self, key: str) -> Instance:
        return self._view.items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._view.items))

    def __len__(self) -> int:
        return len(self._view.items)

    async def close(self) -> None:
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
