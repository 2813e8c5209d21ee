"""Waiting on an asyncio condition for a predicate, with a timeout."""

from __future__ import annotations

import asyncio


async def wait_on(condition: asyncio.Condition, predicate, timeout: float) -> bool:
    """True once ``predicate()`` holds under ``condition``; False after ``timeout`` seconds."""

    async def until():
        async with condition:
            await condition.wait_for(predicate)

    try:
        await asyncio.wait_for(until(), timeout)
        return True
    except asyncio.TimeoutError:
        return False
