import { test } from "node:test";
import * as assert from "node:assert/strict";

import { Backoff, jittered } from "../src";

function seeded(seed: number): () => number {
  return () => ((seed = (seed * 16807) % 2147483647) - 1) / 2147483646;
}

test("waits stay under a ceiling that doubles to the cap", () => {
  const b = new Backoff(0.1, 10, seeded(7));
  const ceilings: number[] = [];
  for (let i = 0; i < 12; i++) {
    const c = b.ceiling();
    ceilings.push(c);
    const w = b.nextWait();
    assert.ok(w >= 0 && w <= c);
  }
  assert.deepEqual(ceilings.slice(0, 4).map((c) => +c.toFixed(3)), [0.1, 0.2, 0.4, 0.8]);
  assert.equal(ceilings[11], 10);
});

test("reset starts again from the base", () => {
  const b = new Backoff(0.1, 10);
  for (let i = 0; i < 20; i++) b.nextWait();
  b.reset();
  assert.equal(b.ceiling(), 0.1);
});

test("full jitter spreads over the whole range; the interval by ten percent", () => {
  const b = new Backoff(1, 1, seeded(1));
  const waits = Array.from({ length: 2000 }, () => b.nextWait());
  assert.ok(Math.min(...waits) < 0.05 && Math.max(...waits) > 0.95);
  const r = seeded(3);
  const values = Array.from({ length: 2000 }, () => jittered(10, r));
  assert.ok(values.every((v) => v >= 9 && v <= 11));
  assert.ok(Math.min(...values) < 9.1 && Math.max(...values) > 10.9);
});

test("bad bounds are refused", () => {
  assert.throws(() => new Backoff(0, 1), RangeError);
});
