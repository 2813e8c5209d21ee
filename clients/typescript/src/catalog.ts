// The catalog's plain objects — agents with their cards, skills and live instances, search
// pages, stored cards, card versions — and their making from the loader's messages, in the
// manner of `types.ts`.
import { Card, CardKind, kindOf } from "./card";
import { strip, time } from "./types";

/** `LIVE`: at least one instance is live; `NO_LIVE_INSTANCES`: none is (the agent is listed
 * only with `includeOffline`). */
export type AgentState = "LIVE" | "NO_LIVE_INSTANCES" | "UNSPECIFIED";

/** One skill of a card. */
export interface Skill {
  id: string;
  name: string;
  description: string;
  tags: string[];
  examples: string[];
  /** The skill's own media types; empty: the card's defaults. */
  inputModes: string[];
  outputModes: string[];
}

/** A live instance of an agent. */
export interface LiveInstance {
  instanceId: string;
  endpoint: string;
  version: string;
  /** The card this instance serves (may differ from the agent's during a rollout). */
  cardDigest: string;
  startedAt: Date | null;
  leaseExpiresAt: Date | null;
}

/** One agent (a namespace and logical id with a card), read from its current card: the active
 * instance's, or (none served, nothing live) the latest published. */
export interface Agent {
  namespace: string;
  logicalId: string;
  kind: CardKind;
  digest: string;
  name: string;
  description: string;
  version: string;
  skills: Skill[];
  defaultInputModes: string[];
  defaultOutputModes: string[];
  state: AgentState;
  liveCount: number;
  /** The active one first. */
  liveInstances: LiveInstance[];
  revision: number;
  publishedAt: Date | null;
  /** The current card byte for byte (from `getAgent` and `publishCard`; null in search results). */
  card: Card | null;
}

export interface SearchResult {
  agent: Agent;
  /** BM25 score (0 without a query). */
  score: number;
  /** The ids of the skills the query or a skill filter matched. */
  matchedSkills: string[];
}

/** One page of a search: `nextPageToken` is "" on the last. */
export interface SearchPage {
  results: SearchResult[];
  nextPageToken: string;
  /** The revision the answer was read at. */
  revision: number;
}

/** A card as stored for an agent. */
export interface StoredCard {
  namespace: string;
  logicalId: string;
  digest: string;
  card: Card;
  publishedAt: Date | null;
  revision: number;
}

/** One version of an agent's card. */
export interface CardVersion {
  digest: string;
  kind: CardKind;
  name: string;
  version: string;
  publishedAt: Date | null;
  revision: number;
  /** Retained instances serving it, and how many of them are live. */
  instanceCount: number;
  liveCount: number;
  /** Whether it is the agent's current card. */
  current: boolean;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Message = any;

const list = (v: Message): string[] => [...(v ?? [])];

export function card(m: Message): Card | null {
  return m ? new Card(m.json ?? "", kindOf(m.kind)) : null;
}

function skill(m: Message): Skill {
  return {
    id: m.id,
    name: m.name,
    description: m.description,
    tags: list(m.tags),
    examples: list(m.examples),
    inputModes: list(m.input_modes),
    outputModes: list(m.output_modes),
  };
}

function liveInstance(m: Message): LiveInstance {
  return {
    instanceId: m.instance_id,
    endpoint: m.endpoint,
    version: m.version,
    cardDigest: m.card_digest,
    startedAt: time(m.started_at),
    leaseExpiresAt: time(m.lease_expires_at),
  };
}

export function agent(m: Message): Agent {
  return {
    namespace: m.namespace,
    logicalId: m.logical_id,
    kind: kindOf(m.kind),
    digest: m.digest,
    name: m.name,
    description: m.description,
    version: m.version,
    skills: (m.skills ?? []).map(skill),
    defaultInputModes: list(m.default_input_modes),
    defaultOutputModes: list(m.default_output_modes),
    state: strip("AGENT_STATE_", m.state ?? "") as AgentState,
    liveCount: Number(m.live_count ?? 0),
    liveInstances: (m.live_instances ?? []).map(liveInstance),
    revision: Number(m.revision ?? 0),
    publishedAt: time(m.published_at),
    card: card(m.card),
  };
}

export function searchPage(m: Message): SearchPage {
  return {
    results: (m.results ?? []).map((r: Message) => ({
      agent: agent(r.agent),
      score: Number(r.score ?? 0),
      matchedSkills: list(r.matched_skills),
    })),
    nextPageToken: m.next_page_token ?? "",
    revision: Number(m.revision ?? 0),
  };
}

export function storedCard(m: Message): StoredCard {
  return {
    namespace: m.namespace,
    logicalId: m.logical_id,
    digest: m.digest,
    card: card(m.card) ?? new Card(""),
    publishedAt: time(m.published_at),
    revision: Number(m.revision ?? 0),
  };
}

export function cardVersion(m: Message): CardVersion {
  return {
    digest: m.digest,
    kind: kindOf(m.kind),
    name: m.name,
    version: m.version,
    publishedAt: time(m.published_at),
    revision: Number(m.revision ?? 0),
    instanceCount: Number(m.instance_count ?? 0),
    liveCount: Number(m.live_count ?? 0),
    current: Boolean(m.current),
  };
}
