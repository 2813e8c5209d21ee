// The client: register, deregister, get, discover (every page), a resuming watch.
import * as fs from "fs";
import * as grpc from "@grpc/grpc-js";

import { Backoff, sleep } from "./backoff";
import { DiscoveryService, RegistryService, ServiceClient } from "./proto";
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

export class Client {
  /** @internal */ readonly registry: ServiceClient;
  /** @internal */ readonly discovery: ServiceClient;
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
    const options = { "grpc.keepalive_time_ms": 30_000 };
    this.registry = new RegistryService(address, creds, options);
    this.discovery = new DiscoveryService(address, creds, options);
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

  /** Like `register`, with the heartbeat interval the registry advised (seconds). */
  async registerWithInterval(o: RegisterOptions): Promise<{ instance: Instance; heartbeatInterval: number }> {
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    const r: any = await this.unary(this.registry, "Register", {
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
    });
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

  close(): void {
    this.registry.close();
    this.discovery.close();
  }
}
