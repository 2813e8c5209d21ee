// The keeper: keeps one agent registered and its heartbeat stream open, with the Rust keeper's
// rules — resume the same instance id across disconnects and registry restarts, full-jitter
// back-off (100 ms → 10 s), register anew on REREGISTER, follow the advised interval (±10 %)
// and DRAIN, deregister on stop. A card in its options goes with every registration, by digest
// once the registry holds it (`Client.registerWithInterval`).
import { EventEmitter } from "events";
import * as grpc from "@grpc/grpc-js";

import { Backoff, jittered, sleep } from "./backoff";
import { Client, RegisterOptions } from "./client";
import { RETRYABLE, RegistryError, Status, seconds } from "./types";
import { waitFor } from "./wait";

const DEREGISTER_BUDGET = 5;

export interface KeeperOptions extends Omit<RegisterOptions, "instanceId"> {
  namespace: string;
}

/** Events: `connected`, `disconnected`, `drain`, `reregistered` (the new instance id),
 * `change` (any of the properties moved), `error` (a registration refused for good). */
export class Keeper extends EventEmitter {
  private id: string | null = null;
  private state: Status | null = null;
  private online = false;
  private made = 0;
  private acked = 0;
  private interval = 5;
  private seq = 0;
  private wanted: "ALIVE" | "DRAINING" | null = null;
  /** A status sent and not yet acknowledged: sent again on the next stream. */
  private unacked: { status: "ALIVE" | "DRAINING"; seq: number } | null = null;
  private lease = 0;
  private stopping = false;
  private stopReason = "agent shutting down";
  private readonly stopSignal = new AbortController();
  private failure: unknown = null;
  private call: grpc.ClientDuplexStream<object, any> | null = null; // eslint-disable-line @typescript-eslint/no-explicit-any
  private pushStatus: (() => void) | null = null;
  private readonly backoff = new Backoff(0.1, 10);
  private running: Promise<void> | null = null;

  constructor(
    private readonly client: Client,
    private readonly opts: KeeperOptions,
  ) {
    super();
  }

  get instanceId(): string | null { return this.id; }
  get status(): Status | null { return this.state; }
  get connected(): boolean { return this.online; }
  /** Registrations made (1 unless the registry asked for a new one). */
  get registrations(): number { return this.made; }
  /** Beats the registry acknowledged. */
  get acks(): number { return this.acked; }

  start(): this {
    this.running ??= this.run().catch((e) => {
      // Kept for stop() to reject with; an `error` listener hears it at once.
      this.failure = e;
      this.online = false;
      if (this.listenerCount("error") > 0) this.emit("error", e);
      this.emit("change");
    });
    return this;
  }

  /** Reports ALIVE or DRAINING on the stream (the registry persists it before the ack). */
  setStatus(status: "ALIVE" | "DRAINING"): void {
    if (status !== "ALIVE" && status !== "DRAINING") throw new TypeError("status must be ALIVE or DRAINING");
    this.wanted = status;
    this.pushStatus?.();
  }

  /** Ends the stream and deregisters (retrying for up to 5 s; an unreachable registry leaves
   * the instance to its lease). Rejects with what ended the keeper, if something did. */
  async stop(reason = "agent shutting down"): Promise<void> {
    this.stopReason = reason;
    this.stopping = true;
    this.stopSignal.abort();
    this.call?.cancel();
    await this.running;
    if (this.failure) throw this.failure;
  }

  /** Resolves once `predicate(this)` holds; rejects after `timeout` seconds. */
  waitFor(predicate: (k: Keeper) => boolean, timeout = 30): Promise<void> {
    return waitFor(this, () => predicate(this), timeout);
  }

  private set(fields: Partial<{ id: string | null; state: Status | null; online: boolean; made: number; acked: number }>) {
    const was = this.online;
    Object.assign(this, fields);
    if (fields.online !== undefined && fields.online !== was) this.emit(fields.online ? "connected" : "disconnected");
    this.emit("change");
  }

  /** Sleeps unless stopped; true when stopped. */
  private pause(s: number): Promise<boolean> {
    return sleep(s, this.stopSignal.signal);
  }

  /** The back-off, capped at a third of the lease so a blip cannot outlast it. */
  private resumeWait(): number {
    const wait = this.backoff.nextWait();
    return this.lease > 0 ? Math.min(wait, Math.max(this.lease / 3, 0.1)) : wait;
  }

  private async run(): Promise<void> {
    while (!this.stopping) {
      if (this.id === null && !(await this.registerOnce())) continue;
      if ((await this.hold()) === "reregister") {
        this.set({ id: null, online: false });
        continue;
      }
      this.set({ online: false });
      if (await this.pause(this.resumeWait())) break;
    }
    if (this.id !== null) await this.deregister();
  }

  private async registerOnce(): Promise<boolean> {
    let r;
    try {
      r = await this.client.registerWithInterval(this.opts);
    } catch (e) {
      const err = e as RegistryError;
      if (!RETRYABLE.has(err.code)) throw err;
      await this.pause(this.backoff.nextWait());
      return false;
    }
    this.backoff.reset();
    this.interval = r.heartbeatInterval || this.interval;
    this.lease = r.instance.leaseTtl;
    this.unacked = null;
    this.set({ id: r.instance.instanceId, state: r.instance.status, made: this.made + 1 });
    if (this.made > 1) this.emit("reregistered", r.instance.instanceId);
    return true;
  }

  /** One stream: "reregister" when the registry wants a new registration, else "resume". */
  private hold(): Promise<"reregister" | "resume"> {
    if (this.stopping) return Promise.resolve("resume");
    const id = this.id as string;
    const call = this.client.registry.Heartbeat(this.client.metadata());
    this.call = call;
    let timer: NodeJS.Timeout | undefined;
    let first = true;
    const beat = () => {
      // A status set since the last beat; on a stream's first, one still unacknowledged.
      const status = this.wanted ?? (first && this.unacked ? this.unacked.status : null);
      this.wanted = null;
      first = false;
      this.seq += 1;
      if (status) this.unacked = { status, seq: this.seq };
      call.write({ instance_id: id, sequence: String(this.seq), status: status ? `INSTANCE_STATUS_${status}` : "INSTANCE_STATUS_UNSPECIFIED" });
      clearTimeout(timer);
      timer = setTimeout(beat, jittered(this.interval) * 1000);
    };
    this.pushStatus = beat;
    return new Promise((resolve) => {
      let done = false;
      const finish = (how: "reregister" | "resume") => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        this.pushStatus = null;
        this.call = null;
        call.cancel();
        resolve(how);
      };
      // eslint-disable-next-line @typescript-eslint/no-explicit-any
      call.on("data", (ack: any) => {
        this.backoff.reset();
        const every = seconds(ack.heartbeat_interval);
        if (every > 0) this.interval = every;
        if (ack.directive === "DIRECTIVE_REREGISTER") return finish("reregister");
        const acked = this.acked + (Number(ack.sequence) > 0 ? 1 : 0);
        if (ack.directive === "DIRECTIVE_DRAIN") {
          this.set({ state: "DRAINING", online: true, acked });
          this.emit("drain");
        } else if (this.unacked && Number(ack.sequence) >= this.unacked.seq) {
          // The registry stored the status before it acknowledged this beat.
          const state = this.unacked.status;
          this.unacked = null;
          this.set({ online: true, acked, state });
        } else {
          this.set({ online: true, acked });
        }
      });
      call.on("error", (e: grpc.ServiceError) => finish(e.code === grpc.status.PERMISSION_DENIED ? "reregister" : "resume"));
      call.on("end", () => finish("resume"));
      beat();
    });
  }

  private async deregister(): Promise<void> {
    const deadline = Date.now() + DEREGISTER_BUDGET * 1000;
    const pause = new Backoff(0.05, 0.5);
    for (;;) {
      try {
        const left = Math.max((deadline - Date.now()) / 1000, 0.05);
        await this.client.deregister(this.id as string, this.stopReason, left);
        this.set({ state: "DEAD", online: false });
        return;
      } catch (e) {
        const err = e as RegistryError;
        if (err.code === "FAILED_PRECONDITION") return;
        const left = (deadline - Date.now()) / 1000;
        if (!RETRYABLE.has(err.code) || left <= 0) throw err;
        await sleep(Math.min(pause.nextWait(), left));
      }
    }
  }
}
