"""Cards the tests register, publish and search: A2A cards with distinct skills, tags and media
types, an MCP server.json, and one with numbers and text whose canonical form is not the
obvious one."""

from __future__ import annotations

import copy
import json


def a2a(name: str, skills: list, inputs=("text/plain",), outputs=("text/plain",), version="1.0.0") -> dict:
    return {
        "name": name,
        "description": f"{name}, for the Python client's tests.",
        "version": version,
        "supportedInterfaces": [
            {"url": f"https://{name.lower().replace(' ', '-')}.example/a2a", "protocolBinding": "JSONRPC",
             "protocolVersion": "1.0"}
        ],
        "capabilities": {"streaming": False},
        "defaultInputModes": list(inputs),
        "defaultOutputModes": list(outputs),
        "skills": skills,
    }


def skill(id: str, name: str, description: str, tags: list, examples=()) -> dict:
    return {"id": id, "name": name, "description": description, "tags": tags, "examples": list(examples)}


PLANNER = a2a("Trip planner", [
    skill("plan-trip", "Plan a trip", "Builds an itinerary of flights, hotels and trains.", ["travel"],
          ["A week in Lisbon, by train"]),
    skill("book-hotel", "Book a hotel", "Reserves rooms.", ["travel", "booking"]),
], outputs=("text/plain", "application/json"))
WEATHER = a2a("Weather", [skill("forecast", "Forecast", "Tomorrow's weather.", ["weather"])])
TRANSLATOR = a2a("Translator", [skill("translate", "Translate", "Speech to text in another language.",
                                      ["language"])], inputs=("audio/wav",))
FILES_MCP = {
    "name": "io.github.example/files",
    "description": "Reads and writes files.",
    "version": "2.1.0",
}
# Numbers whose RFC 8785 form differs from how Python writes them, and text past ASCII: the
# client's digest must still be the registry's.
ODD = a2a("Odd numbers", [skill("count", "Count", "Counts things, café \U0001F600.", ["math"])])
ODD["x-extension"] = {"numbers": [1.5, 1e21, 100, -0.0, 0.1, 9007199254740991, 1e-7], "text": "caf\u00e9 \U0001F600"}


def text(card: dict) -> str:
    """The card as odd-looking JSON text (indented, members reversed): byte for byte is then a
    real claim, and the digest must not depend on the formatting."""
    reordered = dict(reversed(list(card.items())))
    return json.dumps(reordered, indent=3, ensure_ascii=False)


def version(card: dict, v: str) -> dict:
    out = copy.deepcopy(card)
    out["version"] = v
    return out
