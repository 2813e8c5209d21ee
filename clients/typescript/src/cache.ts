// A Map-like local view of one filter, kept current by a watch.
import { EventEmitter } from "events";

import { Client, Filters } from "./client";
import { Instance, WatchEvent } from "./types";
import { waitFor } from "./wait";

/** Instance id → Instance for every non-dead instance matching the filter. A snapshot (the
 * first, or a re-list) is gathered aside and swapped in whole at its bookmark. Emits `change`. */
export class WatchCache extends EventEmitter {
  private items = new Map<string, Instance>();
  private pending: Map<string, Instance> | null = new Map();
  private readonly abort = new AbortController();
  revision = 0;
  synced = false;
  /** What ended the watch for good (a refused token, a bad filter), if anything. */
  error: unknown = null;

  constructor(client: Client, namespace: string, filters: Filters = {}) {
    super();
    void this.run(client, namespace, filters);
  }

  private async run(client: Client, namespace: string, filters: Filters) {
    try {
      for await (const e of client.watch(namespace, { ...filters, signal: this.abort.signal })) {
        this.apply(e);
        this.emit("change");
      }
    } catch (e) {
      this.error = e;
      if (this.listenerCount("error") > 0) this.emit("error", e);
      this.emit("change");
    }
  }

  private apply(e: WatchEvent) {
    if (e.type === "RESET") {
      this.pending = new Map();
    } else if (e.type === "BOOKMARK") {
      if (this.pending) [this.items, this.pending] = [this.pending, null];
      this.revision = Math.max(this.revision, e.revision);
      this.synced = true;
    } else {
      const target = this.pending ?? this.items;
      const i = e.instance as Instance;
      if (e.type === "DELETE") target.delete(i.instanceId);
      else target.set(i.instanceId, i);
      if (!this.pending) this.revision = Math.max(this.revision, e.revision);
    }
  }

  get(id: string): Instance | undefined { return this.items.get(id); }
  has(id: string): boolean { return this.items.has(id); }
  get size(): number { return this.items.size; }
  keys(): IterableIterator<string> { return this.items.keys(); }
  values(): IterableIterator<Instance> { return this.items.values(); }
  entries(): IterableIterator<[string, Instance]> { return this.items.entries(); }

  /** Resolves once `predicate(this)` holds; rejects after `timeout` seconds. */
  waitFor(predicate: (c: WatchCache) => boolean, timeout = 30): Promise<void> {
    return waitFor(this, () => predicate(this), timeout);
  }

  close(): void {
    this.abort.abort();
  }
}
