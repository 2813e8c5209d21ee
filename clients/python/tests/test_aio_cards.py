"""Cards through the asyncio client against the real server: the blocking flavour's guarantees
(by digest first on the wire, search, publish and read byte for byte, the JSON path of an
invalid card, the keeper's card)."""

import asyncio

import pytest

from agent_registry.aio import Client, Keeper, RegistryError, card_digest
from agentregistry.v1 import registry_pb2
from sample_cards import FILES_MCP, PLANNER, TRANSLATOR, WEATHER, text, version


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 90))


def test_a_card_goes_once_then_by_digest_and_is_served_live(server, wire):
    async def main():
        client = Client(wire.target)
        body = text(PLANNER)
        first = await client.register("aio-cards", "planner", card=body)
        second = await client.register("aio-cards", "planner", card=body)
        calls = wire.calls("/Register")
        sent = [registry_pb2.RegisterRequest.FromString(c.request) for c in calls]
        assert [c.code for c in calls] == ["NOT_FOUND", "OK", "OK"]
        assert [s.HasField("card") for s in sent] == [False, True, False]
        assert sent[0].card_digest == sent[2].card_digest == card_digest(body) == second.card_digest
        agent = await client.get_agent("aio-cards", "planner")
        assert agent.state == "LIVE" and agent.card.json == body and agent.digest == card_digest(body)
        assert {i.instance_id for i in agent.live_instances} == {first.instance_id, second.instance_id}
        await client.close()

    run(main())


def test_search_publish_read_and_versions(server):
    async def main():
        client = Client(server.target)
        ns = "aio-search"
        await client.register(ns, "planner", card=PLANNER)
        await client.register(ns, "translator", card=TRANSLATOR)
        page = await client.search_agents(ns, "translate speech")
        assert page.results[0].agent.logical_id == "translator" and "translate" in page.results[0].matched_skills
        assert [r.agent.logical_id for r in (await client.search_agents(ns, tags=["travel"])).results] == ["planner"]
        first = await client.search_agents(ns, page_size=1)
        assert len(first.results) == 1 and first.next_page_token
        every = [r.agent.logical_id async for r in client.search_all_agents(ns, page_size=1)]
        assert every == ["planner", "translator"]

        body = text(FILES_MCP)
        published = await client.publish_card(ns, "files", body, kind="mcp")
        assert published.digest == card_digest(body) and published.agent.state == "NO_LIVE_INSTANCES"
        stored = await client.get_card(published.digest)
        assert stored.card.json == body and stored.card.kind == "mcp"
        newer = await client.publish_card(ns, "files", version(FILES_MCP, "3.0.0"), kind="mcp")
        assert [v.digest for v in await client.list_card_versions(ns, "files")] == [newer.digest, published.digest]
        offline = await client.search_agents(ns, kinds=["mcp"], include_offline=True)
        assert [(r.agent.logical_id, r.agent.state) for r in offline.results] == [("files", "NO_LIVE_INSTANCES")]
        await client.close()

    run(main())


def test_an_invalid_card_names_the_json_path(server):
    async def main():
        client = Client(server.target)
        bad = dict(PLANNER, skills=[{"name": "no id", "description": "x", "tags": []}])
        with pytest.raises(RegistryError) as e:
            await client.register("aio-bad", "planner", card=bad)
        assert e.value.code == "INVALID_ARGUMENT" and "card.skills[0].id" in e.value.message, e.value.message
        with pytest.raises(RegistryError) as e:
            await client.publish_card("aio-bad", "planner", bad)
        assert e.value.code == "INVALID_ARGUMENT" and "card.skills[0].id" in e.value.message
        await client.close()

    run(main())


def test_the_keeper_registers_with_its_card(server):
    async def main():
        client = Client(server.target)
        async with Keeper(client, namespace="aio-keeper", logical_id="weather", card=WEATHER) as k:
            assert await k.wait(lambda k: k.connected and k.acks >= 1)
            agent = await client.get_agent("aio-keeper", "weather")
            assert agent.state == "LIVE" and agent.card.data == WEATHER and agent.digest == card_digest(WEATHER)
            assert [i.instance_id for i in agent.live_instances] == [k.instance_id]
        assert (await client.get_agent("aio-keeper", "weather")).state == "NO_LIVE_INSTANCES"
        await client.close()

    run(main())
