// Waiting for a predicate over an emitter's "change" events, with a timeout.
import { EventEmitter } from "events";

/** Resolves once `predicate()` holds (checked now and on every `change`); rejects after
 * `timeout` seconds. */
export function waitFor(emitter: EventEmitter, predicate: () => boolean, timeout: number): Promise<void> {
  return new Promise((resolve, reject) => {
    if (predicate()) return resolve();
    const timer = setTimeout(() => {
      emitter.off("change", check);
      reject(new Error(`timed out after ${timeout} s`));
    }, timeout * 1000);
    const check = () => {
      if (!predicate()) return;
      clearTimeout(timer);
      emitter.off("change", check);
      resolve();
    };
    emitter.on("change", check);
  });
}
