// Full-jitter exponential back-off, and the jittered heartbeat interval.

export class Backoff {
  private attempt = 0;

  constructor(
    readonly base = 0.1,
    readonly cap = 10,
    private readonly random: () => number = Math.random,
  ) {
    if (!(base > 0) || cap < base) throw new RangeError("need 0 < base <= cap");
  }

  /** The largest wait (seconds) the next call may return. */
  ceiling(): number {
    return Math.min(this.cap, this.base * 2 ** Math.min(this.attempt, 62));
  }

  /** A wait drawn uniformly from [0, ceiling] (seconds). */
  nextWait(): number {
    const wait = this.random() * this.ceiling();
    this.attempt += 1;
    return wait;
  }

  reset(): void {
    this.attempt = 0;
  }
}

/** The advised heartbeat interval, ±10 %. */
export function jittered(interval: number, random: () => number = Math.random): number {
  return interval * (0.9 + 0.2 * random());
}

/** Resolves after `seconds`, or at once when `signal` aborts (then true); leaves no timer. */
export function sleep(seconds: number, signal?: AbortSignal): Promise<boolean> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve(true);
    const done = (aborted: boolean) => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      resolve(aborted);
    };
    const onAbort = () => done(true);
    const timer = setTimeout(() => done(false), seconds * 1000);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
