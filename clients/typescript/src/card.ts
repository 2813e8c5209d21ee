// Agent cards on the client side: a card as the caller gives it (an object, its JSON text, or a
// `Card` read back from the registry), the exact text sent for it, and its digest — `sha256:` of
// its RFC 8785 canonical form, the registry's own — so a registration can name a stored card
// instead of sending it.
import * as crypto from "crypto";
import canonicalize from "canonicalize";

/** What a card describes: an A2A AgentCard (`"a2a"`) or an MCP `server.json` (`"mcp"`). */
export type CardKind = "a2a" | "mcp";

/** A card as the registry keeps it: its kind and its JSON text, byte for byte. */
export class Card {
  constructor(
    readonly json: string,
    readonly kind: CardKind = "a2a",
  ) {}

  /** The card parsed (on every call: the text stays the record). */
  parse(): Record<string, unknown> {
    return JSON.parse(this.json);
  }

  /** The card's digest (`sha256:<hex>`). */
  digest(): string {
    return cardDigest(this.json);
  }
}

/** A card to send: its JSON text (sent as it is), an object (sent as `JSON.stringify` writes
 * it) or a `Card` (its text and kind). */
export type CardSource = string | object | Card;

const KINDS: Record<CardKind, string> = { a2a: "CARD_KIND_A2A", mcp: "CARD_KIND_MCP" };

/** The JSON text sent for `card`. */
export function cardJson(card: CardSource): string {
  if (card instanceof Card) return card.json;
  if (typeof card === "string") return card;
  const json = JSON.stringify(card);
  if (json === undefined) throw new TypeError("the card is not JSON");
  return json;
}

/** The `Card` message for `card`; `kind` defaults to the `Card`'s own, else `"a2a"`. */
export function cardMessage(card: CardSource, kind?: CardKind): { kind: string; json: string } {
  return { kind: kindName(kind ?? (card instanceof Card ? card.kind : "a2a")), json: cardJson(card) };
}

/** The proto enum name of a kind. */
export function kindName(kind: CardKind): string {
  if (!Object.hasOwn(KINDS, kind)) throw new TypeError(`card kind must be one of ${Object.keys(KINDS).join(", ")}`);
  return KINDS[kind];
}

/** The digest of `json`, or null when it is not one JSON object (the registry then says what
 * is wrong with it, by JSON path). */
export function digestOf(json: string): string | null {
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch {
    return null;
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) return null;
  const canonical = canonicalize(value) as string;
  return `sha256:${crypto.createHash("sha256").update(canonical, "utf8").digest("hex")}`;
}

/** The digest the registry gives `card` (`sha256:<hex>` of its RFC 8785 canonical form):
 * formatting and member order do not change it. Throws a TypeError when `card` is not one JSON
 * object. The registry also refuses cards whose digest JSON cannot pin down (a member given twice,
 * an integer beyond ±(2^53 − 1)), so for every card it accepts the two agree. */
export function cardDigest(card: CardSource): string {
  const digest = digestOf(cardJson(card));
  if (digest === null) throw new TypeError("a card must be one JSON object");
  return digest;
}

/** The kind a message names (unspecified is read as A2A, as the registry reads it). */
export function kindOf(name: string | undefined): CardKind {
  return name === "CARD_KIND_MCP" ? "mcp" : "a2a";
}
