"""The shared rules, without a server: where a watch resumes, how a cache swaps snapshots, how
long a keeper waits before it reopens a stream, that a status stays pending until acked, and
what a registration with a card sends first and after a NOT_FOUND."""

from types import SimpleNamespace

import pytest

from agent_registry import Card, Instance, RegistryError, WatchEvent, card_digest
from agent_registry._common import register_requests, sends_card_after
from agent_registry._core import CacheView, KeeperCore, WatchState


def inst(i: str) -> Instance:
    return Instance(instance_id=i, namespace="n", logical_id=i, epoch="e", status="ALIVE")


def test_a_break_or_a_clean_end_inside_a_snapshot_relists():
    w = WatchState("n", (), None, (), None, 0)
    assert w.failed(RegistryError("UNAVAILABLE", "x")) == WatchEvent("RESET", 0)
    assert w.ended() == WatchEvent("RESET", 0)
    w.events(SimpleNamespace(events=[], bookmark_revision=7))
    assert w.ended() is None and w.revision == 7, "past the bookmark: resume, no re-list"
    assert w.failed(RegistryError("UNAVAILABLE", "x")) is None
    assert w.failed(RegistryError("OUT_OF_RANGE", "gone")) == WatchEvent("RESET", 0)
    assert w.revision == 0


def test_a_snapshot_is_swapped_in_whole_at_its_bookmark():
    v = CacheView()
    v.apply(WatchEvent("PUT", 3, inst("a")))
    assert v.items == {} and not v.synced, "half a snapshot is never shown"
    v.apply(WatchEvent("BOOKMARK", 3))
    assert set(v.items) == {"a"} and v.synced
    v.apply(WatchEvent("RESET", 0))
    v.apply(WatchEvent("PUT", 9, inst("b")))
    assert set(v.items) == {"a"}, "the old view stands until the new snapshot's bookmark"
    v.apply(WatchEvent("BOOKMARK", 9))
    assert set(v.items) == {"b"}, "a died meanwhile: gone with the swap"


def test_the_resume_wait_is_capped_at_a_third_of_the_lease():
    k = KeeperCore(None, namespace="n", logical_id="a")
    k._registered(Instance(instance_id="i", namespace="n", logical_id="a", epoch="e", status="ALIVE", lease_ttl=3.0), 1.0)
    for _ in range(10):
        k._backoff.next_wait()
    assert all(k._resume_wait() <= 1.0 for _ in range(200))


def test_a_status_is_sent_again_until_acknowledged():
    k = KeeperCore(None, namespace="n", logical_id="a")
    k._wanted = "DRAINING"
    first = k._beat("i", k._status_to_send(first=True))
    assert first.status != 0
    # The stream failed before the ack: the next stream's first beat carries it again.
    again = k._beat("i", k._status_to_send(first=True))
    assert again.status == first.status and again.sequence > first.sequence
    _, state = k._acked(SimpleNamespace(sequence=again.sequence, directive=0,
                                        heartbeat_interval=SimpleNamespace(seconds=0, nanos=0)))
    assert state["status"] == "DRAINING"
    assert k._status_to_send(first=True) is None, "acknowledged: not sent again"


def test_a_card_is_named_by_digest_first_and_sent_only_after_not_found():
    first, with_card = register_requests("n", "a", card='{"b": [1, 2.0], "a": "x"}', endpoint="e:1")
    assert not first.HasField("card") and first.card_digest == card_digest({"a": "x", "b": [1, 2]})
    assert first.endpoint == with_card.endpoint == "e:1"
    assert with_card.card.json == '{"b": [1, 2.0], "a": "x"}' and with_card.card_digest == ""
    assert sends_card_after(RegistryError("NOT_FOUND", "no card"), with_card)
    assert not sends_card_after(RegistryError("INVALID_ARGUMENT", "x"), with_card)
    # No card, or one with no digest to name: one request, nothing to fall back to.
    plain, none = register_requests("n", "a", card_digest="sha256:ab")
    assert plain.card_digest == "sha256:ab" and none is None
    bad, none = register_requests("n", "a", card="[1]")
    assert bad.card.json == "[1]" and not bad.card_digest and none is None
    with pytest.raises(ValueError):
        register_requests("n", "a", card="{}", card_digest="sha256:ab")


def test_a_card_read_from_the_registry_keeps_its_kind():
    _, with_card = register_requests("n", "a", card=Card(kind="mcp", json="{}"))
    assert with_card.card.kind == 2 and with_card.card.json == "{}"
    k = KeeperCore(None, namespace="n", logical_id="a", card={"name": "x"}, card_kind="MCP")
    assert k._fields["card"] == '{"name": "x"}' and k._fields["card_kind"] == "mcp"
    with pytest.raises(ValueError):
        KeeperCore(None, namespace="n", logical_id="a", card={}, card_kind="openapi")
    with pytest.raises(TypeError):
        card_digest(42)
