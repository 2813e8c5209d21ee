"""Agent cards on the client side, free of I/O: the JSON text sent for a card given as a dict
or a string, its kind, and the digest the registry stores it under (``sha256:`` of its RFC 8785
canonical form), so a registration can name a stored card instead of sending it."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Mapping, Optional, Union

import rfc8785

from agentregistry.v1 import types_pb2

from ._types import KIND_NAME, Card

KINDS = {name: value for value, name in KIND_NAME.items() if value}

# What a card may be given as: its JSON text (sent byte for byte), that text as UTF-8 bytes, a
# mapping (sent as ``json.dumps`` writes it), or a ``Card`` read from the registry (its kind too).
CardInput = Union[str, bytes, Mapping[str, Any], Card]


def kind_value(kind: str) -> int:
    """``"a2a"`` or ``"mcp"`` (any case) as the proto's ``CardKind``."""
    try:
        return KINDS[kind.lower()]
    except (KeyError, AttributeError):
        raise ValueError(f"card kind must be one of {sorted(KINDS)}, not {kind!r}") from None


def card_json(card: CardInput) -> str:
    """The JSON text sent for ``card``: a string as it is, bytes decoded, a mapping dumped."""
    text = card.json if isinstance(card, Card) else card
    if isinstance(text, str):
        return text
    if isinstance(text, (bytes, bytearray)):
        return bytes(text).decode("utf-8")
    if isinstance(text, Mapping):
        # allow_nan=False: NaN and Infinity are not JSON, and the registry would refuse them.
        return json.dumps(dict(text), ensure_ascii=False, allow_nan=False)
    raise TypeError(f"a card is a JSON string, bytes, a mapping or a Card, not {type(card).__name__}")


def card_proto(card: CardInput, kind: str = "a2a") -> types_pb2.Card:
    """The proto ``Card``; a ``Card`` read from the registry keeps its own kind."""
    own = card.kind if isinstance(card, Card) else kind
    return types_pb2.Card(kind=kind_value(own), json=card_json(card))


def _not_json(name: str):
    raise ValueError(f"{name} is not JSON")


def card_digest(card: CardInput) -> str:
    """The digest the registry gives ``card``: ``"sha256:" + hex(sha256(RFC 8785 form))``.
    Formatting and member order do not change it. ``ValueError`` when the card is not one JSON
    object with an RFC 8785 form (the registry refuses those too: NaN, an integer beyond
    ±(2**53 - 1), text that is not UTF-8)."""
    value = json.loads(card_json(card), parse_constant=_not_json)
    if not isinstance(value, dict):
        raise ValueError("a card is one JSON object")
    return "sha256:" + hashlib.sha256(rfc8785.dumps(value)).hexdigest()


def digest_or_none(card: CardInput) -> Optional[str]:
    """The digest, or ``None`` when there is none to name (the bytes go, and the registry says
    what is wrong with them)."""
    try:
        return card_digest(card)
    except ValueError:  # json.JSONDecodeError and rfc8785's errors are ValueErrors
        return None
