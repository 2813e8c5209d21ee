"""A stock gRPC client resolves xds:///<logical_id>.<namespace> through the registry and
follows it: drains, deregistrations, new registrations and a registry restart."""

from __future__ import annotations

import time
import uuid

import grpc
import pytest

from agent_registry import Client, Keeper
from agentregistry.v1 import admin_pb2, admin_pb2_grpc
from conftest import METHOD

NAMESPACE = "xds"


def call(channel, timeout=5.0) -> str:
    return channel.unary_unary(METHOD)(b"", timeout=timeout, wait_for_ready=True).decode()


def names(channel, n=30) -> set:
    return {call(channel) for _ in range(n)}


def eventually(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = predicate()
        if got:
            return got
        time.sleep(0.05)
    pytest.fail(f"not within {timeout} s: {what}")


def keep(client, logical_id, backend) -> Keeper:
    k = Keeper(client, namespace=NAMESPACE, logical_id=logical_id, endpoint=backend.endpoint,
               lease_ttl=15.0)
    k.start()
    assert k.wait(lambda k: k.instance_id is not None, 30), "registered"
    return k


def drain(registry, instance_id: str) -> None:
    with grpc.insecure_channel(registry.target) as ch:
        admin_pb2_grpc.AdminServiceStub(ch).DrainInstance(
            admin_pb2.DrainInstanceRequest(instance_id=instance_id, reason="xds e2e"), timeout=10)


def gone_within(channel, name: str, seconds: float):
    """Calls from `seconds` after now on never reach `name` (the client was told in time)."""
    start = time.monotonic()
    time.sleep(seconds)
    after = [call(channel) for _ in range(60)]
    assert name not in after, f"{name} still called {after.count(name)}/60 times {seconds} s later"
    return time.monotonic() - start


def test_calls_reach_every_live_instance_and_follow_drain_deregister_and_register(registry, backends):
    logical_id = f"svc-{uuid.uuid4().hex[:8]}"
    client = Client(registry.target)
    a, b, c = backends("a"), backends("b"), backends("c")
    ka, kb, kc = keep(client, logical_id, a), keep(client, logical_id, b), keep(client, logical_id, c)
    channel = grpc.insecure_channel(f"xds:///{logical_id}.{NAMESPACE}")
    try:
        eventually(lambda: names(channel) == {"a", "b", "c"}, 20, "calls reach all three")
        drain(registry, ka.instance_id)
        gone_within(channel, "a", 2.0)
        assert names(channel) == {"b", "c"}
        kb.stop()
        gone_within(channel, "b", 2.0)
        assert names(channel) == {"c"}
        d = backends("d")
        kd = keep(client, logical_id, d)
        eventually(lambda: names(channel) == {"c", "d"}, 5, "the fourth receives calls")
        for k in (ka, kc, kd):
            k.stop()
    finally:
        channel.close()
        client.close()


def test_the_client_keeps_routing_across_a_registry_restart(registry, backends):
    logical_id = f"svc-{uuid.uuid4().hex[:8]}"
    client = Client(registry.target)
    x, y = backends("x"), backends("y")
    kx, ky = keep(client, logical_id, x), keep(client, logical_id, y)
    channel = grpc.insecure_channel(f"xds:///{logical_id}.{NAMESPACE}")
    try:
        eventually(lambda: names(channel) == {"x", "y"}, 20, "calls reach both")
        registry.stop()
        # The registry is away: the client keeps the endpoints it has.
        assert names(channel) == {"x", "y"}
        registry.start()
        # Back: the client has reconnected when a drain made now reaches it.
        eventually(lambda: kx.wait(lambda k: k.connected, 0.5), 30, "the agent is back")
        drain(registry, kx.instance_id)
        eventually(lambda: names(channel) == {"y"}, 30, "the client follows the restarted registry")
        for k in (kx, ky):
            k.stop()
    finally:
        channel.close()
        client.close()


def test_a_name_that_stands_for_nothing_fails_calls_without_breaking_others(registry, backends):
    logical_id = f"svc-{uuid.uuid4().hex[:8]}"
    client = Client(registry.target)
    k = keep(client, logical_id, backends("only"))
    good = grpc.insecure_channel(f"xds:///{logical_id}.{NAMESPACE}")
    bad = grpc.insecure_channel("xds:///no-namespace-here")
    empty = grpc.insecure_channel(f"xds:///nobody-{logical_id}.{NAMESPACE}")
    try:
        with pytest.raises(grpc.RpcError) as e:
            bad.unary_unary(METHOD)(b"", timeout=20)
        assert e.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED), e.value
        with pytest.raises(grpc.RpcError) as e:
            empty.unary_unary(METHOD)(b"", timeout=5)
        assert e.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED), e.value
        assert eventually(lambda: names(good, 5) == {"only"}, 20, "the good name still routes")
        k.stop()
    finally:
        for ch in (good, bad, empty):
            ch.close()
        client.close()
