// agent-registry's Node client: `Client` makes calls (registration, discovery, watches and the
// card catalog), `Keeper` keeps one agent registered (resuming its instance id across
// disconnects and registry restarts), `WatchCache` keeps a local view of a filter current, and
// `cardDigest` names a card as the registry does.
export { Backoff, jittered } from "./backoff";
export { WatchCache } from "./cache";
export { Card, cardDigest } from "./card";
export type { CardKind, CardSource } from "./card";
export type { Agent, AgentState, CardVersion, LiveInstance, SearchPage, SearchResult, Skill, StoredCard } from "./catalog";
export { Client } from "./client";
export type { ClientOptions, DiscoverOptions, Filters, RegisterOptions, SearchOptions, WatchOptions } from "./client";
export { Keeper } from "./keeper";
export type { KeeperOptions } from "./keeper";
export { RegistryError } from "./types";
export type { Instance, Status, WatchEvent } from "./types";
