// Plain objects the library hands out instead of generated messages, and the one error.
import * as grpc from "@grpc/grpc-js";

export type Status = "STARTING" | "ALIVE" | "DRAINING" | "DEAD" | "UNSPECIFIED";

export interface Instance {
  instanceId: string;
  namespace: string;
  logicalId: string;
  epoch: string;
  status: Status;
  agentType: string;
  version: string;
  endpoint: string;
  capabilities: string[];
  labels: Record<string, string>;
  actorName: string;
  nodeId: string;
  ipAddress: string;
  pid: number;
  /** Seconds. */
  leaseTtl: number;
  startedAt: Date | null;
  lastHeartbeat: Date | null;
  stoppedAt: Date | null;
  deathReason: string | null;
  revision: number;
  /** The digest of the card this instance serves (`sha256:<hex>`), "" when none. */
  cardDigest: string;
}

/** `PUT` (the instance as it now is), `DELETE` (it died), `BOOKMARK` (every change up to
 * `revision` seen) or `RESET` (the watch re-lists: what follows up to the next bookmark is the
 * whole current set). */
export interface WatchEvent {
  type: "PUT" | "DELETE" | "BOOKMARK" | "RESET";
  revision: number;
  instance?: Instance;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Message = any;

export function seconds(d: Message): number {
  if (!d) return 0;
  return Number(d.seconds ?? 0) + (d.nanos ?? 0) / 1e9;
}

export function duration(s: number | undefined): Message {
  if (s === undefined) return null;
  const whole = Math.floor(s);
  return { seconds: String(whole), nanos: Math.round((s - whole) * 1e9) };
}

export function time(t: Message): Date | null {
  if (!t) return null;
  const ms = Number(t.seconds ?? 0) * 1000 + Math.floor((t.nanos ?? 0) / 1e6);
  return ms === 0 ? null : new Date(ms);
}

export const strip = (prefix: string, v: string) => (v.startsWith(prefix) ? v.slice(prefix.length) : v);

export function instance(m: Message): Instance {
  const reason = strip("DEATH_REASON_", m.death_reason ?? "");
  return {
    instanceId: m.instance_id,
    namespace: m.namespace,
    logicalId: m.logical_id,
    epoch: m.epoch,
    status: strip("INSTANCE_STATUS_", m.status ?? "") as Status,
    agentType: m.agent_type,
    version: m.version,
    endpoint: m.endpoint,
    capabilities: [...(m.capabilities ?? [])],
    labels: { ...(m.labels ?? {}) },
    actorName: m.actor_name,
    nodeId: m.node_id,
    ipAddress: m.ip_address,
    pid: Number(m.pid ?? 0),
    leaseTtl: seconds(m.lease_ttl),
    startedAt: time(m.started_at),
    lastHeartbeat: time(m.last_heartbeat),
    stoppedAt: time(m.stopped_at),
    deathReason: reason === "" || reason === "UNSPECIFIED" ? null : reason,
    revision: Number(m.revision ?? 0),
    cardDigest: m.card_digest ?? "",
  };
}

/** Every call the registry refused or could not answer: `code` is the gRPC status code's name
 * (`"INVALID_ARGUMENT"`, `"UNAVAILABLE"`, …), `message` the server's words (naming the field). */
export class RegistryError extends Error {
  constructor(
    readonly code: string,
    readonly details: string,
  ) {
    super(`${code}: ${details}`);
    this.name = "RegistryError";
  }

  static from(e: unknown): RegistryError {
    const s = e as grpc.ServiceError;
    const code = typeof s?.code === "number" ? grpc.status[s.code] : "UNKNOWN";
    return new RegistryError(code, s?.details ?? String(e));
  }
}

/** Worth another try, here or on another replica (the Rust keeper's rule). */
export const RETRYABLE = new Set([
  "UNAVAILABLE", "UNKNOWN", "INTERNAL", "DEADLINE_EXCEEDED", "ABORTED", "CANCELLED", "RESOURCE_EXHAUSTED",
]);
