// agent-registry's Node client: `Client` makes calls, `Keeper` keeps one agent registered
// (resuming its instance id across disconnects and registry restarts), `WatchCache` keeps a
// local view of a filter current.
export { Backoff, jittered } from "./backoff";
export { WatchCache } from "./cache";
export { Client } from "./client";
export type { ClientOptions, DiscoverOptions, Filters, RegisterOptions, WatchOptions } from "./client";
export { Keeper } from "./keeper";
export type { KeeperOptions } from "./keeper";
export { RegistryError } from "./types";
export type { Instance, Status, WatchEvent } from "./types";
