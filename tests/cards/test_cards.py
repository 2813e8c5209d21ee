"""The registry's cards read by the official A2A SDK, and its digests checked against an
independent RFC 8785 implementation."""

from __future__ import annotations

import hashlib
import json

import httpx
import pytest
import rfc8785
from a2a.client import A2ACardResolver
from a2a.client.errors import AgentCardResolutionError

CARD_V1 = {
    "name": "Trip planner",
    "description": "Plans trips: flights, hotels, trains.",
    "version": "1.4.2",
    "supportedInterfaces": [
        {"url": "https://planner.example/a2a", "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}
    ],
    "capabilities": {"streaming": True},
    "defaultInputModes": ["text/plain"],
    "defaultOutputModes": ["text/plain", "application/json"],
    "skills": [
        {"id": "plan-trip", "name": "Plan a trip", "description": "Builds an itinerary.",
         "tags": ["travel"], "examples": ["A week in Lisbon, by train"]},
    ],
    "x-extension": {"numbers": [1.5, 1e21, 100, -0.0], "text": "caf\u00e9 \U0001F600"},
}

CARD_V03 = {
    "protocolVersion": "0.3.0",
    "name": "Weather",
    "description": "Forecasts.",
    "url": "https://weather.example/a2a",
    "preferredTransport": "JSONRPC",
    "version": "0.9.0",
    "capabilities": {},
    "defaultInputModes": ["text/plain"],
    "defaultOutputModes": ["text/plain"],
    "skills": [{"id": "forecast", "name": "Forecast", "description": "Tomorrow.", "tags": ["weather"]}],
}


def digest(card: dict) -> str:
    return "sha256:" + hashlib.sha256(rfc8785.dumps(card)).hexdigest()


@pytest.mark.parametrize("card", [CARD_V1, CARD_V03], ids=["a2a-1.0", "a2a-0.3"])
def test_the_digest_is_of_the_rfc8785_form(registry, card):
    # Pretty-printed, its members in reverse order: formatting never changes the digest.
    reordered = dict(reversed(list(card.items())))
    body = json.dumps(reordered, indent=3, ensure_ascii=False).encode()
    published = registry.publish("digests", card["name"].lower().replace(" ", "-"), body)
    assert published["digest"] == digest(card)


@pytest.mark.asyncio
async def test_the_a2a_sdk_resolves_a_card_through_the_registry_only_while_it_lives(registry):
    body = json.dumps(CARD_V1, indent=2).encode()
    published = registry.publish("prod", "planner", body)
    base_url = f"{registry.base}/a2a/prod/planner"
    async with httpx.AsyncClient() as http:
        # Nothing live: the registry answers 503, and the SDK cannot resolve the card.
        with pytest.raises(AgentCardResolutionError) as refused:
            await A2ACardResolver(http, base_url).get_agent_card()
        assert refused.value.status_code == 503
        registry.register("prod", "planner", cardDigest=published["digest"], leaseTtl="60s")
        card = await A2ACardResolver(http, base_url).get_agent_card()
        assert card.name == "Trip planner"
        assert card.version == "1.4.2"
        assert [s.id for s in card.skills] == ["plan-trip"]
        assert card.supported_interfaces[0].url == "https://planner.example/a2a"
        # Byte for byte, what the SDK fetched is what was published.
        raw = await http.get(f"{base_url}/.well-known/agent-card.json")
        assert raw.content == body
        assert raw.headers["etag"] == f'"{published["digest"]}"'


@pytest.mark.asyncio
async def test_the_a2a_sdk_reads_a_0_3_card(registry):
    body = json.dumps(CARD_V03).encode()
    published = registry.publish("prod", "weather", body)
    registry.register("prod", "weather", cardDigest=published["digest"], leaseTtl="60s")
    async with httpx.AsyncClient() as http:
        card = await A2ACardResolver(http, f"{registry.base}/a2a/prod/weather").get_agent_card()
    assert card.name == "Weather"
    assert [s.id for s in card.skills] == ["forecast"]
