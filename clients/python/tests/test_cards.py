"""Cards through the blocking client against the real server: registered with an instance (by
digest first, bytes only when the registry lacks them, as seen on the wire), searched, read,
published, refused with the JSON path, and kept by the keeper."""

import hashlib
import json

import pytest

from agent_registry import Client, Keeper, RegistryError, card_digest
from agentregistry.v1 import registry_pb2, types_pb2
from sample_cards import FILES_MCP, ODD, PLANNER, TRANSLATOR, WEATHER, text, version


def test_a_registered_card_is_served_live_byte_for_byte(server):
    client = Client(server.target)
    body = text(PLANNER)
    inst = client.register("cards-live", "planner", endpoint="10.0.0.7:9000", card=body)
    agent = client.get_agent("cards-live", "planner")
    assert agent.state == "LIVE" and agent.live_count == 1
    assert [i.instance_id for i in agent.live_instances] == [inst.instance_id]
    assert agent.card is not None and agent.card.json == body, "the exact text sent"
    assert agent.card.kind == "a2a" and agent.kind == "a2a"
    assert agent.card.data == PLANNER
    assert agent.name == "Trip planner" and [s.id for s in agent.skills] == ["plan-trip", "book-hotel"]
    assert agent.skills[0].tags == ["travel"] and agent.default_output_modes == ["text/plain", "application/json"]
    assert inst.card_digest == agent.digest == agent.live_instances[0].card_digest
    assert client.get(inst.instance_id).card_digest == agent.digest
    client.close()


def test_the_clients_digest_is_the_registrys_and_an_independent_one(server):
    client = Client(server.target)
    # PLANNER is ASCII with no fractions: its RFC 8785 form is sorted keys, no whitespace.
    independent = "sha256:" + hashlib.sha256(
        json.dumps(PLANNER, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()
    assert card_digest(PLANNER) == card_digest(text(PLANNER)) == independent
    client.register("cards-digest", "planner", card=text(PLANNER))
    assert client.get_agent("cards-digest", "planner").digest == independent
    # Doubles, -0, the largest exact integer and text past ASCII: the registry canonicalizes them in
    # Rust; the client must agree or its by-digest registrations would never find a card.
    client.register("cards-digest", "odd", card=ODD)
    assert client.get_agent("cards-digest", "odd").digest == card_digest(ODD) == card_digest(text(ODD))
    with pytest.raises(ValueError):
        card_digest("[1, 2]")
    client.close()


def register_calls(wire):
    calls = wire.calls("/Register")
    return [(c.code, registry_pb2.RegisterRequest.FromString(c.request)) for c in calls], calls


def test_a_card_crosses_the_wire_once_then_goes_by_digest(server, wire):
    client = Client(wire.target)
    body = text(PLANNER)
    digest = card_digest(body)

    # A card the registry lacks: the digest alone, NOT_FOUND, then the bytes.
    first = client.register("cards-wire", "planner", card=body)
    sent, raw = register_calls(wire)
    assert [code for code, _ in sent] == ["NOT_FOUND", "OK"]
    assert sent[0][1].card_digest == digest and not sent[0][1].HasField("card")
    assert sent[1][1].card.json == body and sent[1][1].card.kind == types_pb2.CARD_KIND_A2A
    assert len(raw[0].request) < len(body) < len(raw[1].request)

    # The same card again (another replica): the digest alone, and that is enough.
    wire.clear()
    second = client.register("cards-wire", "planner", card=PLANNER)  # a dict: formatting is no matter
    sent, raw = register_calls(wire)
    assert [code for code, _ in sent] == ["OK"]
    assert sent[0][1].card_digest == digest and not sent[0][1].HasField("card")
    assert len(raw[0].request) < 200 < len(body)
    assert first.card_digest == second.card_digest == digest

    # A new version: not held yet, so digest, NOT_FOUND, bytes once more.
    wire.clear()
    third = client.register("cards-wire", "planner", card=version(PLANNER, "2.0.0"))
    assert [code for code, _ in register_calls(wire)[0]] == ["NOT_FOUND", "OK"]
    agent = client.get_agent("cards-wire", "planner")
    assert agent.live_count == 3
    assert {i.instance_id: i.card_digest for i in agent.live_instances}[third.instance_id] == third.card_digest
    assert third.card_digest != digest
    client.close()


def test_search_finds_the_right_agent_by_text_and_filters_and_pages(server):
    client = Client(server.target)
    ns = "cards-search"
    for logical_id, card in (("planner", PLANNER), ("weather", WEATHER), ("translator", TRANSLATOR)):
        client.register(ns, logical_id, card=card)
    files = client.register(ns, "files", card=FILES_MCP, card_kind="mcp")

    page = client.search_agents(ns, "plan a trip")
    assert page.results[0].agent.logical_id == "planner" and page.results[0].score > 0
    assert "plan-trip" in page.results[0].matched_skills and page.revision > 0
    assert page.results[0].agent.card is None, "search results leave the card's bytes out"

    def ids(**filters):
        return [r.agent.logical_id for r in client.search_agents(ns, **filters).results]

    assert ids(tags=["weather"]) == ["weather"]
    assert ids(tags=["travel", "booking"]) == ["planner"]
    assert ids(skills=["translate"]) == ["translator"]
    assert client.search_agents(ns, skills=["translate"]).results[0].matched_skills == ["translate"]
    assert ids(input_modes=["audio/wav"]) == ["translator"]
    assert ids(output_modes=["application/json"]) == ["planner"]
    assert ids(kinds=["mcp"]) == ["files"]
    assert ids(query="files", kinds=["a2a"]) == []

    # Without a query: every agent, by logical id, a page at a time.
    first = client.search_agents(ns, page_size=3)
    assert [r.agent.logical_id for r in first.results] == ["files", "planner", "translator"]
    assert first.next_page_token
    last = client.search_agents(ns, page_size=3, page_token=first.next_page_token)
    assert [r.agent.logical_id for r in last.results] == ["weather"] and last.next_page_token == ""
    every = [r.agent.logical_id for r in client.search_all_agents(ns, page_size=1)]
    assert every == ["files", "planner", "translator", "weather"]

    # Nothing live serves it: gone from search unless offline agents are asked for.
    client.deregister(files.instance_id)
    assert ids(kinds=["mcp"]) == []
    offline = client.search_agents(ns, kinds=["mcp"], include_offline=True).results
    assert [(r.agent.logical_id, r.agent.state, r.agent.kind) for r in offline] == [("files", "NO_LIVE_INSTANCES", "mcp")]
    with pytest.raises(TypeError):
        client.search_agents(ns, tags="weather")
    client.close()


def test_an_invalid_card_is_refused_naming_the_json_path(server):
    client = Client(server.target)
    bad = json.loads(json.dumps(PLANNER))
    del bad["skills"][0]["id"]
    with pytest.raises(RegistryError) as e:
        client.register("cards-bad", "planner", card=bad)
    assert e.value.code == "INVALID_ARGUMENT" and "card.skills[0].id" in e.value.message, e.value.message
    assert client.discover("cards-bad", view="all") == [], "nothing was written"
    with pytest.raises(RegistryError) as e:
        client.publish_card("cards-bad", "files", dict(FILES_MCP, name="no-slash"), kind="mcp")
    assert e.value.code == "INVALID_ARGUMENT" and "card.name" in e.value.message, e.value.message
    with pytest.raises(RegistryError) as e:
        client.register("cards-bad", "planner", card="not json")
    assert e.value.code == "INVALID_ARGUMENT"
    # No RFC 8785 form, so no digest: the bytes go, and the registry names the number.
    big = dict(PLANNER, **{"x-big": 2**53})
    with pytest.raises(ValueError):
        card_digest(big)
    with pytest.raises(RegistryError) as e:
        client.register("cards-bad", "planner", card=big)
    assert e.value.code == "INVALID_ARGUMENT" and "card.x-big" in e.value.message, e.value.message
    with pytest.raises(ValueError):
        client.register("cards-bad", "planner", card=PLANNER, card_kind="openapi")
    client.close()


def test_publish_then_read_byte_for_byte_list_versions_and_register_by_digest(server):
    client = Client(server.target)
    ns, body = "cards-publish", text(FILES_MCP)
    published = client.publish_card(ns, "files", body, kind="mcp")
    assert published.digest == card_digest(body)
    assert published.agent.state == "NO_LIVE_INSTANCES" and published.agent.kind == "mcp"
    stored = client.get_card(published.digest)
    assert stored.card.json == body and stored.card.kind == "mcp"
    assert (stored.namespace, stored.logical_id, stored.digest) == (ns, "files", published.digest)
    assert stored.published_at is not None

    newer = client.publish_card(ns, "files", version(FILES_MCP, "2.2.0"), kind="mcp")
    versions = client.list_card_versions(ns, "files")
    assert [v.digest for v in versions] == [newer.digest, published.digest], "newest first"
    assert [v.current for v in versions] == [True, False] and versions[0].version == "2.2.0"

    # An instance naming the first version by digest alone serves it.
    inst = client.register(ns, "files", card_digest=published.digest)
    assert inst.card_digest == published.digest
    assert client.get_card(instance_id=inst.instance_id).card.json == body
    agent = client.get_agent(ns, "files")
    assert agent.state == "LIVE" and agent.digest == published.digest and agent.card.json == body
    with pytest.raises(RegistryError) as e:
        client.register(ns, "files", card_digest="sha256:" + "0" * 64)
    assert e.value.code == "NOT_FOUND"
    client.close()


def test_the_keeper_registers_its_card_and_by_digest_after_an_eviction(server, wire):
    client = Client(wire.target)
    body = text(WEATHER)
    with Keeper(client, namespace="cards-keeper", logical_id="weather", card=body) as k:
        assert k.wait(lambda k: k.connected and k.acks >= 1)
        agent = client.get_agent("cards-keeper", "weather")
        assert agent.state == "LIVE" and agent.card.json == body
        assert [i.instance_id for i in agent.live_instances] == [k.instance_id]
        assert [code for code, _ in register_calls(wire)[0]] == ["NOT_FOUND", "OK"]
        old = k.instance_id
        server.admin("EvictInstance", instance_id=old, reason="test")
        assert k.wait(lambda k: k.instance_id not in (None, old) and k.connected)
        sent, _ = register_calls(wire)
        assert [code for code, _ in sent] == ["NOT_FOUND", "OK", "OK"]
        assert not sent[2][1].HasField("card") and sent[2][1].card_digest == agent.digest
    assert client.get_agent("cards-keeper", "weather").state == "NO_LIVE_INSTANCES"
    client.close()
