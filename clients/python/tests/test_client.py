import pytest

from agent_registry import Client, Keeper, RegistryError, WatchCache
from conftest import eventually, reachable


def test_register_heartbeat_discover(server):
    client = Client(server.target)
    with Keeper(client, namespace="py", logical_id="planner", capabilities=["plan"], lease_ttl=6) as k:
        assert k.wait(lambda k: k.connected and k.acks >= 2)
        found = client.discover("py", view="live", capabilities=["plan"])
        assert [i.instance_id for i in found] == [k.instance_id]
        assert found[0].status == "ALIVE" and found[0].logical_id == "planner"
        assert client.get(k.instance_id).lease_ttl == 6.0
    client.close()


def test_a_killed_and_restarted_registry_keeps_the_same_instance(server):
    client = Client(server.target)
    k = Keeper(client, namespace="py", logical_id="survivor", lease_ttl=6).start()
    assert k.wait(lambda k: k.connected and k.acks >= 1)
    first = k.instance_id
    server.kill()
    assert k.wait(lambda k: not k.connected)
    server.start()
    acks = k.acks
    assert k.wait(lambda k: k.connected and k.acks >= acks + 2, timeout=30)
    assert k.instance_id == first and k.registrations == 1, "resumed, never registered anew"
    got = client.get(first)
    assert got.status == "ALIVE" and got.death_reason is None
    k.stop()
    client.close()


def test_an_evicted_agent_registers_anew_and_says_so(server):
    client = Client(server.target)
    seen = []
    k = Keeper(client, namespace="py", logical_id="evicted", on_reregistered=lambda k, new: seen.append(new)).start()
    assert k.wait(lambda k: k.connected)
    old = k.instance_id
    server.admin("EvictInstance", instance_id=old, reason="test")
    assert k.wait(lambda k: k.instance_id not in (None, old) and k.connected)
    assert seen == [k.instance_id] and k.registrations == 2
    assert client.get(old).death_reason == "EVICTED"
    k.stop()


def test_a_drain_reaches_the_agent(server):
    client = Client(server.target)
    drained = []
    k = Keeper(client, namespace="py", logical_id="drained", on_drain=lambda k: drained.append(k.instance_id)).start()
    assert k.wait(lambda k: k.connected)
    server.admin("DrainInstance", instance_id=k.instance_id, reason="test")
    assert k.drained.wait(10)
    assert drained == [k.instance_id] and k.status == "DRAINING"
    assert client.get(k.instance_id).status == "DRAINING"
    k.stop()


def test_stop_deregisters(server):
    client = Client(server.target)
    k = Keeper(client, namespace="py", logical_id="leaving").start()
    assert k.wait(lambda k: k.connected)
    k.stop()
    got = client.get(k.instance_id)
    assert got.status == "DEAD" and got.death_reason == "DEREGISTERED"


def test_set_status_is_reported_on_the_stream(server):
    client = Client(server.target)
    with Keeper(client, namespace="py", logical_id="busy") as k:
        assert k.wait(lambda k: k.connected)
        k.set_status("DRAINING")
        eventually(lambda: client.get(k.instance_id).status == "DRAINING", what="DRAINING stored")
        k.set_status("ALIVE")
        eventually(lambda: client.get(k.instance_id).status == "ALIVE", what="ALIVE stored")


def test_the_watch_cache_follows_changes_and_a_restart(server):
    client = Client(server.target)
    cache = WatchCache(client, "cached")
    assert cache.wait_for(lambda c: c.synced)
    a = client.register("cached", "a")
    assert cache.wait_for(lambda c: a.instance_id in c)
    assert cache[a.instance_id].status == "ALIVE"
    client.deregister(a.instance_id)
    assert cache.wait_for(lambda c: a.instance_id not in c)
    server.kill()
    server.start()
    try:
        reachable(client)
        b = client.register("cached", "b")
        assert cache.wait_for(lambda c: b.instance_id in c, timeout=30), "caught up after the restart"
        assert set(cache) == {b.instance_id}
    finally:
        cache.close()
        client.close()


def test_bad_input_names_the_field(server):
    client = Client(server.target)
    with pytest.raises(RegistryError) as e:
        client.register("py", "ok", labels={"-bad": "x"})
    assert e.value.code == "INVALID_ARGUMENT"
    assert "labels" in e.value.message
    assert client.discover("py", view="all") == [], "nothing was written"


def test_a_token_without_the_role_gets_a_clear_error(secured):
    reader = Client(secured.target, token="reader-secret")
    with pytest.raises(RegistryError) as e:
        reader.register("py", "x")
    assert e.value.code == "PERMISSION_DENIED"
    assert "reader" in e.value.message and "Register" in e.value.message
    assert reader.discover("py") == []
    with pytest.raises(RegistryError) as e:
        Client(secured.target).discover("py")
    assert e.value.code == "UNAUTHENTICATED"
    admin = Client(secured.target, token="admin-secret")
    assert admin.register("py", "y").status == "ALIVE"


def test_closing_a_watch_cache_ends_its_stream_at_once(server):
    client = Client(server.target)
    cache = WatchCache(client, "closing")
    assert cache.wait_for(lambda c: c.synced)
    cache.close()
    cache._thread.join(5)
    assert not cache._thread.is_alive(), "the watch thread ended without waiting for a message"
