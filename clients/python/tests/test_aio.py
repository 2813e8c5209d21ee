"""The asyncio flavour against the real server: the same guarantees as the blocking one."""

import asyncio

import pytest

from agent_registry.aio import Client, Keeper, RegistryError, WatchCache


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 90))


async def reachable(client, timeout: float = 30.0):
    """Reads until a restarted server answers (see conftest.reachable)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            await client.discover("reachable", view="all")
            return
        except RegistryError as e:
            if e.code != "UNAVAILABLE" or loop.time() > deadline:
                raise
        await asyncio.sleep(0.05)


def test_register_heartbeat_discover(server):
    async def main():
        client = Client(server.target)
        async with Keeper(client, namespace="aio", logical_id="planner", capabilities=["plan"]) as k:
            assert await k.wait(lambda k: k.connected and k.acks >= 2)
            found = await client.discover("aio", view="live", capabilities=["plan"])
            assert [i.instance_id for i in found] == [k.instance_id]
        assert (await client.get(k.instance_id)).death_reason == "DEREGISTERED"
        await client.close()

    run(main())


def test_a_killed_and_restarted_registry_keeps_the_same_instance(server):
    async def main():
        client = Client(server.target)
        k = Keeper(client, namespace="aio", logical_id="survivor", lease_ttl=6).start()
        assert await k.wait(lambda k: k.connected and k.acks >= 1)
        first = k.instance_id
        server.kill()
        assert await k.wait(lambda k: not k.connected)
        server.start()
        acks = k.acks
        assert await k.wait(lambda k: k.connected and k.acks >= acks + 2)
        assert k.instance_id == first and k.registrations == 1
        got = await client.get(first)
        assert got.status == "ALIVE" and got.death_reason is None
        await k.stop()
        await client.close()

    run(main())


def test_evict_drain_and_their_callbacks(server):
    async def main():
        client = Client(server.target)
        seen, drained = [], []
        k = Keeper(
            client,
            namespace="aio",
            logical_id="worker",
            on_reregistered=lambda k, new: seen.append(new),
            on_drain=lambda k: drained.append(k.instance_id),
        ).start()
        assert await k.wait(lambda k: k.connected)
        server.admin("DrainInstance", instance_id=k.instance_id, reason="test")
        await asyncio.wait_for(k.drained.wait(), 10)
        assert drained == [k.instance_id] and k.status == "DRAINING"
        old = k.instance_id
        server.admin("EvictInstance", instance_id=old, reason="test")
        assert await k.wait(lambda k: k.instance_id not in (None, old) and k.connected)
        assert seen == [k.instance_id] and k.registrations == 2
        await k.stop()
        await client.close()

    run(main())


def test_the_watch_cache_follows_changes_and_a_restart(server):
    async def main():
        client = Client(server.target)
        cache = WatchCache(client, "cached")
        assert await cache.wait_for(lambda c: c.synced)
        a = await client.register("cached", "a")
        assert await cache.wait_for(lambda c: a.instance_id in c)
        await client.deregister(a.instance_id)
        assert await cache.wait_for(lambda c: a.instance_id not in c)
        server.kill()
        server.start()
        try:
            await reachable(client)
            b = await client.register("cached", "b")
            assert await cache.wait_for(lambda c: b.instance_id in c)
            assert set(cache) == {b.instance_id}
        finally:
            await cache.close()
            await client.close()

    run(main())


def test_errors_carry_the_code_and_the_field(secured):
    async def main():
        reader = Client(secured.target, token="reader-secret")
        with pytest.raises(RegistryError) as e:
            await reader.register("aio", "x")
        assert e.value.code == "PERMISSION_DENIED"
        admin = Client(secured.target, token="admin-secret")
        with pytest.raises(RegistryError) as e:
            await admin.register("aio", "ok", labels={"-bad": "x"})
        assert e.value.code == "INVALID_ARGUMENT" and "labels" in e.value.message
        await reader.close()
        await admin.close()

    run(main())
