"""The asyncio keeper: ``_core.KeeperCore``'s rules in one task."""

from __future__ import annotations

import asyncio
import logging
from typing import Optional

import grpc

from .._backoff import Backoff, jittered
from ._wait import wait_on
from .._core import DEREGISTER_BUDGET, KeeperCore
from .._errors import RETRYABLE, RegistryError

log = logging.getLogger("agent_registry")


class Keeper(KeeperCore):
    """The blocking ``Keeper``'s arguments; ``start()`` in a running loop, ``await stop()``,
    ``set_status()``, ``async with``."""

    def __init__(self, client, **config):
        super().__init__(client, **config)
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._changed = asyncio.Condition()
        self._task: Optional[asyncio.Task] = None
        self.drained = asyncio.Event()

    async def wait(self, predicate, timeout: float = 30.0) -> bool:
        return await wait_on(self._changed, lambda: predicate(self), timeout)

    async def _update(self, **fields) -> None:
        async with self._changed:
            for k, v in fields.items():
                setattr(self, "_" + k, v)
            self._changed.notify_all()

    def start(self) -> "Keeper":
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def set_status(self, status: str) -> None:
        self._check(status)
        self._wanted = status
        self._wake.set()  # the current stream's

    async def stop(self, reason: str = "agent shutting down") -> None:
        self._stop_reason = reason
        self._stopping.set()
        self._wake.set()
        if self._task is not None:
            await self._task

    async def __aenter__(self) -> "Keeper":
        return self.start()

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    async def _pause(self, seconds: float) -> bool:
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
            return True
        except asyncio.TimeoutError:
            return False

    async def _run(self) -> None:
        while not self._stopping.is_set():
            if self._instance_id is None and not await self._register_once():
                continue
            if await self._hold() == "reregister":
                await self._update(instance_id=None, connected=False)
                continue
            await self._update(connected=False)
            if await self._pause(self._resume_wait()):
                break
        if self._instance_id is not None:
            await self._deregister()

    async def _register_once(self) -> bool:
        try:
            inst, interval = await self._client.register_with_interval(
                self._namespace, self._logical_id, **self._fields
            )
        except RegistryError as e:
            if e.code not in RETRYABLE:
                raise
            log.warning("register failed (%s); retrying", e)
            await self._pause(self._backoff.next_wait())
            return False
        self.drained.clear()
        await self._update(**self._registered(inst, interval))
        self._after_registered()
        return True

    async def _beats(self, instance_id: str, wake: asyncio.Event, ended: list):
        """One stream's requests; ``wake`` and ``ended`` are that stream's own, so a finished
        stream's generator never takes a status meant for the next."""
        status = self._status_to_send(first=True)
        while not self._stopping.is_set() and not ended:
            yield self._beat(instance_id, status)
            try:
                await asyncio.wait_for(wake.wait(), jittered(self._interval))
            except asyncio.TimeoutError:
                pass
            wake.clear()
            if ended:
                return
            status = self._status_to_send(first=False)

    async def _hold(self) -> str:
        wake, ended = asyncio.Event(), []
        self._wake = wake
        call = self._client._registry.Heartbeat(
            self._beats(self._instance_id, wake, ended), metadata=self._client._conn.metadata()
        )
        stopper = asyncio.ensure_future(self._stopping.wait())
        try:
            while True:
                read = asyncio.ensure_future(call.read())
                done, _ = await asyncio.wait({read, stopper}, return_when=asyncio.FIRST_COMPLETED)
                if read not in done:
                    read.cancel()
                    return "resume"
                ack = read.result()
                if ack is grpc.aio.EOF:
                    return "resume"
                what, state = self._acked(ack)
                if what == "reregister":
                    log.warning("the registry asked for a new registration: %s", ack.reason)
                    return "reregister"
                await self._update(**state)
                if what == "drain":
                    self.drained.set()
                    self._callback(self._on_drain)
        except grpc.RpcError as e:
            if not self._stopping.is_set():
                log.info("heartbeat stream ended (%s); resuming", e.details())
            return self._stream_error(e)
        finally:
            ended.append(True)
            wake.set()
            stopper.cancel()
            call.cancel()

    async def _deregister(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DEREGISTER_BUDGET
        pause = Backoff(0.05, 0.5)
        while True:
            try:
                left = max(deadline - loop.time(), 0.05)
                await self._client.deregister(self._instance_id, self._stop_reason, timeout=left)
                await self._update(status="DEAD", connected=False)
                return
            except RegistryError as e:
                left = deadline - loop.time()
                if self._deregister_outcome(e, left):
                    return
                await asyncio.sleep(min(pause.next_wait(), left))
