"""A dict-like local view of one filter, kept current by a watch in a thread of its own."""

from __future__ import annotations

import threading
from typing import Dict, Iterator, Mapping, Optional, Sequence

from ._client import Client
from ._core import CacheReadout, CacheView
from ._types import Instance


class WatchCache(CacheReadout, Mapping[str, Instance]):
    """Instance id → :class:`Instance` for every non-dead instance matching the filter.

    A snapshot (the first, or a re-list after the watch fell behind the log) is swapped in
    whole at its bookmark, so readers never see half of one. ``revision`` is the last change
    applied; ``wait_for(predicate)`` blocks until the view satisfies it."""

    def __init__(
        self,
        client: Client,
        namespace: str,
        *,
        logical_ids: Sequence[str] = (),
        agent_type: Optional[str] = None,
        capabilities: Sequence[str] = (),
        labels: Optional[Mapping[str, str]] = None,
    ):
        self._client = client
        self._filter = dict(
            logical_ids=logical_ids, agent_type=agent_type, capabilities=capabilities, labels=labels
        )
        self._namespace = namespace
        self._view = CacheView()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"watch-cache-{namespace}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        for e in self._client.watch(self._namespace, stop=self._stop, **self._filter):
            with self._cond:
                self._view.apply(e)
                self._cond.notify_all()

    def wait_for(self, predicate, timeout: float = 30.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self), timeout)

    def __getitem__(self, key: str) -> Instance:
        with self._cond:
            return self._view.items[key]

    def __iter__(self) -> Iterator[str]:
        with self._cond:
            return iter(list(self._view.items))

    def snapshot(self) -> Dict[str, Instance]:
        """A copy of the whole view, taken at one moment."""
        with self._cond:
            return dict(self._view.items)

    # Copied under one lock: a bookmark's swap or a death between two reads cannot mix views.
    def keys(self):
        return list(self.snapshot().keys())

    def values(self):
        return list(self.snapshot().values())

    def items(self):
        return list(self.snapshot().items())

    def __len__(self) -> int:
        with self._cond:
            return len(self._view.items)

    def close(self) -> None:
        self._stop.set()

    def __enter__(self) -> "WatchCache":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
