// The client: register (a card sent once, then by digest), deregister, get, discover (every
// page), a resuming watch, and the catalog: search agents, an agent, cards by digest, publish.
import * as fs from "fs";
import * as grpc from "@grpc/grpc-js";

import { Backoff, sleep } from "./backoff";
import { CardKind, CardSource, cardMessage, digestOf, kindName } from "./card";
import { Agent, CardVersion, SearchPage, StoredCard, agent, cardVersion, searchPage, storedCard } from "./catalog";
import { CatalogService, DiscoveryService, RegistryService, ServiceClient } from "./proto";
import { Instance, RETRYABLE, RegistryError, WatchEvent, duration, instance, seconds } from "./types";

export interface ClientOptions {
  /** A bearer token, or a file holding one (re-read when it changes). */
  token?: string;
  tokenFile?: string;
  /** PEM files: the CA that signed the server's certificate; a client certificate and key for
   * mutual TLS. TLS is on when any is given or the target is `https://…`. */
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
  /** gRPC client interceptors, run on every call (tracing, logging, watching what is sent). */
  interceptors?: grpc.Interceptor[];
}

export interface RegisterOptions {
  namespace?: string;
  logicalId: string;
  agentType?: string;
  version?: string;
  endpoint?: string;
  capabilities?: string[];
  labels?: Record<string, string>;
  /** Seconds. */
  leaseTtl?: number;
  instanceId?: string;
  ready?: boolean;
  /** The card this instance serves: sent by digest, and as bytes only when the registry does
   * not hold it yet (so a fleet of replicas sends it once). */
  card?: CardSource;
  /** `"a2a"` (the default, or a `Card`'s own) or `"mcp"`. */
  cardKind?: CardKind;
  /** Or a card the registry already holds for this agent, by digest (NOT_FOUND if it does not). */
  cardDigest?: string;
}

export interface SearchOptions {
  /** `default` when empty. */
  namespace?: string;
  /** Free text, ranked (BM25). Empty: every agent the filters keep, by logical id. */
  query?: string;
  /** Every one of these skill ids; every one of these tags. */
  skills?: string[];
  tags?: string[];
  /** Any of these media types; any of these kinds. */
  inputModes?: string[];
  outputModes?: string[];
  kinds?: CardKind[];
  /** Also agents nothing live serves now. */
  includeOffline?: boolean;
  /** 0: 100; at most 1000. */
  pageSize?: number;
  pageToken?: string;
}

export interface Filters {
  logicalIds?: string[];
  agentType?: string;
  capabilities?: string[];
  labels?: Record<string, string>;
}

export interface DiscoverOptions extends Filters {
  view?: "active" | "live" | "all";
}

export interface WatchOptions extends Filters {
  startRevision?: number;
  /** Ends the watch when aborted. */
  signal?: AbortSignal;
}

const VIEWS = { active: "DISCOVER_VIEW_ACTIVE", live: "DISCOVER_VIEW_LIVE", all: "DISCOVER_VIEW_ALL" };
const read = (p?: string) => (p ? fs.readFileSync(p) : null);

function filterFields(namespace: string, f: Filters) {
  return {
    namespace,
    logical_ids: f.logicalIds ?? [],
    agent_type: f.agentType ?? "",
    capabilities: f.capabilities ?? [],
    label_selector: f.labels ?? {},
  };
}

/** The RegisterRequest's fields but the card's. */
function registerFields(o: RegisterOptions) {
  return {
    namespace: o.namespace ?? "default",
    logical_id: o.logicalId,
    agent_type: o.agentType ?? "",
    version: o.version ?? "",
    endpoint: o.endpoint ?? "",
    capabilities: o.capabilities ?? [],
    labels: o.labels ?? {},
    lease_ttl: duration(o.leaseTtl),
    instance_id: o.instanceId ?? "",
    ready: o.ready ?? true,
  };
}

export class Client {
  /** @internal */ readonly registry: ServiceClient;
  /** @internal */ readonly discovery: ServiceClient;
  /** @internal */ readonly catalog: ServiceClient;
  private readonly tokenFile?: string;
  private token?: string;
  private tokenMtime = -1;

  constructor(target: string, opts: ClientOptions = {}) {
    const tls = Boolean(opts.tlsCa || opts.tlsCert || target.startsWith("https://"));
    const address = target.replace(/^https?:\/\//, "").replace(/\/$/, "");
    if (Boolean(opts.tlsCert) !== Boolean(opts.tlsKey)) throw new TypeError("tlsCert and tlsKey go together");
    if (opts.token && opts.tokenFile) throw new TypeError("give token or tokenFile, not both");
    const creds = tls
      ? grpc.credentials.createSsl(read(opts.tlsCa), read(opts.tlsKey), read(opts.tlsCert))
      : grpc.credentials.createInsecure();
    const options = { "grpc.keepalive_time_ms": 30_000, interceptors: opts.interceptors ?? [] };
    this.registry = new RegistryService(address, creds, options);
    this.discovery = new DiscoveryService(address, creds, options);
    this.catalog = new CatalogService(address, creds, options);
    this.token = opts.token;
    this.tokenFile = opts.tokenFile;
  }

  /** @internal The call metadata: the bearer token, if any. */
  metadata(): grpc.Metadata {
    const md = new grpc.Metadata();
    if (this.tokenFile) {
      const mtime = fs.statSync(this.tokenFile).mtimeMs;
      if (mtime !== this.tokenMtime) {
        this.token = fs.readFileSync(this.tokenFile, "utf8").trim();
        this.tokenMtime = mtime;
      }
    }
    if (this.token) md.set("authorization", `Bearer ${this.token}`);
    return md;
  }

  private unary<T>(stub: ServiceClient, method: string, req: object, timeout = 30): Promise<T> {
    return new Promise((resolve, reject) => {
      stub[method](req, this.metadata(), { deadline: Date.now() + timeout * 1000 }, (e: unknown, r: T) =>
        e ? reject(RegistryError.from(e)) : resolve(r),
      );
    });
  }

  /** Like `register`, with the heartbeat interval the registry advised (seconds). A card is
   * named by its digest first and sent as bytes only when the registry answers NOT_FOUND (a card
   * that is not one JSON object has no digest: it goes as bytes, for the registry to refuse). */
  async registerWithInterval(o: RegisterOptions): Promise<{ instance: Instance; heartbeatInterval: number }> {
    if (o.card !== undefined && o.cardDigest !== undefined) throw new TypeError("give card or cardDigest, not both");
    if (o.card === undefined) return this.registerOnce({ ...registerFields(o), card_digest: o.cardDigest ?? "" });
    const card = cardMessage(o.card, o.cardKind);
    const digest = digestOf(card.json);
    if (digest !== null) {
      try {
        return await this.registerOnce({ ...registerFields(o), card_digest: digest });
      } catch (e) {
        if ((e as RegistryError).code !== "NOT_FOUND") throw e;
      }
    }
    return this.registerOnce({ ...registerFields(o), card });
  }

  private async registerOnce(req: object): Promise<{ instance: Instance; heartbeatInterval: number }> {
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    const r: any = await this.unary(this.registry, "Register", req);
    return { instance: instance(r.instance), heartbeatInterval: seconds(r.heartbeat_interval) };
  }

  /** Registers an instance (or, given the `instanceId` of one alive, renews it). */
  async register(o: RegisterOptions): Promise<Instance> {
    return (await this.registerWithInterval(o)).instance;
  }

  async deregister(instanceId: string, reason = "", timeout = 30): Promise<Instance> {
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    const r: any = await this.unary(this.registry, "Deregister", { instance_id: instanceId, reason }, timeout);
    return instance(r.instance);
  }

  async get(instanceId: string): Promise<Instance> {
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    const r: any = await this.unary(this.discovery, "GetInstance", { instance_id: instanceId });
    return instance(r.instance);
  }

  /** Every matching instance, across all pages. */
  async discover(namespace: string, o: DiscoverOptions = {}): Promise<Instance[]> {
    const view = VIEWS[o.view ?? "active"];
    if (!view) throw new TypeError(`view must be one of ${Object.keys(VIEWS).join(", ")}`);
    const out: Instance[] = [];
    let page_token = "";
    for (;;) {
      // eslint-disable-next-line @typescript-eslint/no-explicit-any
      const page: any = await this.unary(this.discovery, "Discover", {
        ...filterFields(namespace, o), view, page_size: 1000, page_token,
      });
      out.push(...page.instances.map(instance));
      if (!page.next_page_token) return out;
      page_token = page.next_page_token;
    }
  }

  /** Changes of a filter, for ever: from `startRevision` (0: the current set first, then a
   * bookmark). A broken stream resumes after the last revision seen; when that revision is gone
   * (`OUT_OF_RANGE`) — or the stream broke inside a snapshot — the watch re-lists, announced by
   * a `RESET` event. Ends when `signal` aborts or the loop breaks. */
  async *watch(namespace: string, o: WatchOptions = {}): AsyncGenerator<WatchEvent> {
    let revision = o.startRevision ?? 0;
    let snapshot = revision === 0;
    const backoff = new Backoff(0.1, 5);
    while (!o.signal?.aborted) {
      const call = this.discovery.Watch({ ...filterFields(namespace, o), start_revision: String(revision) }, this.metadata());
      const abort = () => call.cancel();
      o.signal?.addEventListener("abort", abort);
      try {
        for await (const msg of call) {
          backoff.reset();
          for (const e of msg.events) {
            const r = Number(e.revision);
            if (!snapshot) revision = Math.max(revision, r);
            yield { type: e.type === "TYPE_DELETE" ? "DELETE" : "PUT", revision: r, instance: instance(e.instance) };
          }
          if (msg.events.length === 0) {
            revision = Math.max(revision, Number(msg.bookmark_revision));
            snapshot = false;
            yield { type: "BOOKMARK", revision: Number(msg.bookmark_revision) };
          }
        }
        // Ended cleanly (the server is shutting down): inside a snapshot only a re-list is safe.
        if (snapshot) {
          revision = 0;
          yield { type: "RESET", revision: 0 };
        }
      } catch (e) {
        if (o.signal?.aborted) return;
        const err = RegistryError.from(e);
        if (err.code === "OUT_OF_RANGE" || (snapshot && RETRYABLE.has(err.code))) {
          revision = 0;
          snapshot = true;
          yield { type: "RESET", revision: 0 };
          continue;
        }
        if (!RETRYABLE.has(err.code)) throw err;
      } finally {
        o.signal?.removeEventListener("abort", abort);
        call.cancel();
      }
      if (await sleep(backoff.nextWait(), o.signal)) return;
    }
  }

  /** One page of the agents a search selects (live ones unless `includeOffline`). */
  async searchAgents(o: SearchOptions = {}): Promise<SearchPage> {
    const r = await this.unary(this.catalog, "SearchAgents", {
      namespace: o.namespace ?? "",
      query: o.query ?? "",
      skills: o.skills ?? [],
      tags: o.tags ?? [],
      input_modes: o.inputModes ?? [],
      output_modes: o.outputModes ?? [],
      kinds: (o.kinds ?? []).map(kindName),
      include_offline: o.includeOffline ?? false,
      page_size: o.pageSize ?? 0,
      page_token: o.pageToken ?? "",
    });
    return searchPage(r);
  }

  /** Every page of a search, from `pageToken` (the first page when unset) to the last. */
  async *searchAgentPages(o: SearchOptions = {}): AsyncGenerator<SearchPage> {
    let pageToken = o.pageToken ?? "";
    do {
      const page = await this.searchAgents({ ...o, pageToken });
      yield page;
      pageToken = page.nextPageToken;
    } while (pageToken);
  }

  /** The agent `logicalId` of `namespace`: its current card (byte for byte) and live instances. */
  async getAgent(namespace: string, logicalId: string): Promise<Agent> {
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    const r: any = await this.unary(this.catalog, "GetAgent", { namespace, logical_id: logicalId });
    return agent(r.agent);
  }

  /** Stores (or publishes again) `card` for an agent, ahead of any instance: the digest it is
   * stored under, and the agent as it now is (whose current card may be an instance's). */
  async publishCard(namespace: string, logicalId: string, card: CardSource, kind?: CardKind): Promise<{ digest: string; agent: Agent }> {
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    const r: any = await this.unary(this.catalog, "PublishCard", { namespace, logical_id: logicalId, card: cardMessage(card, kind) });
    return { digest: r.digest, agent: agent(r.agent) };
  }

  /** A card by digest: of the agent `namespace`/`logicalId` if given, else of any agent the
   * caller may read. */
  async getCard(digest: string, of: { namespace?: string; logicalId?: string } = {}): Promise<StoredCard> {
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    const r: any = await this.unary(this.catalog, "GetCard", { digest, namespace: of.namespace ?? "", logical_id: of.logicalId ?? "" });
    return storedCard(r.card);
  }

  /** The card an instance serves. */
  async getInstanceCard(instanceId: string): Promise<StoredCard> {
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    const r: any = await this.unary(this.catalog, "GetCard", { instance_id: instanceId });
    return storedCard(r.card);
  }

  /** Every version of an agent's card still kept, newest first. */
  async listCardVersions(namespace: string, logicalId: string): Promise<CardVersion[]> {
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    const r: any = await this.unary(this.catalog, "ListCardVersions", { namespace, logical_id: logicalId });
    return (r.versions ?? []).map(cardVersion);
  }

  close(): void {
    this.registry.close();
    this.discovery.close();
    this.catalog.close();
  }
}
