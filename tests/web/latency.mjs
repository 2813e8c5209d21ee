// A measurement, not a test (BENCHMARKS.md): the time from a Register made through gRPC to
// (1) its `put` event on the HTTP watch read by Node's fetch, and (2) its row in the console's
// live table in Chromium; N registrations each (default 50), one at a time.
//   node tests/web/latency.mjs [N]     (after npm ci in tests/web; AGENT_REGISTRY_BIN or target/)
import { chromium } from 'playwright-core';
import { CHROMIUM, Registry } from './registry.mjs';

const n = Number(process.argv[2] || 50);
const server = await new Registry().start();
const browser = await chromium.launch(CHROMIUM);

function summary(scenario, samples) {
  samples.sort((a, b) => a - b);
  const q = (p) => +samples[Math.min(samples.length - 1, Math.floor(p * samples.length))].toFixed(1);
  return JSON.stringify({ scenario, n: samples.length, p50_ms: q(0.5), p90_ms: q(0.9), p99_ms: q(0.99), max_ms: q(1) });
}

/** Register → its `put` on the SSE watch, read by fetch in this process. */
async function sseLatency(after) {
  const stop = new AbortController();
  const res = await fetch(`${server.url}/v1/namespaces/sse-lat/watch?startRevision=${after}`, { signal: stop.signal });
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  const nextPut = async () => {
    for (;;) {
      const end = buffer.indexOf('\n\n');
      if (end >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const line = (name) => block.split('\n').find((l) => l.startsWith(`${name}: `))?.slice(name.length + 2);
        if (line('event') === 'put') return JSON.parse(line('data'));
        continue;
      }
      const { value, done } = await reader.read();
      if (done) throw new Error('the watch ended');
      buffer += value;
    }
  };
  const samples = [];
  for (let i = 0; i < n; i++) {
    const started = performance.now();
    const [inst, put] = await Promise.all([
      server.register({ namespace: 'sse-lat', logicalId: `agent-${i}`, ready: true }),
      nextPut(),
    ]);
    if (put.instance.instanceId !== inst.instanceId) throw new Error('out of order');
    samples.push(performance.now() - started);
  }
  stop.abort();
  return samples;
}

try {
  const seed = await server.register({ namespace: 'sse-lat', logicalId: 'seed', ready: true });
  console.log(summary('register-to-sse-event', await sseLatency(seed.revision)));
  const page = await browser.newPage();
  await server.register({ namespace: 'lat', logicalId: 'seed', ready: true });
  await page.goto(`${server.url}/#/ns/lat?view=all`);
  await page.getByText(/live · revision/).waitFor();
  const samples = [];
  for (let i = 0; i < n; i++) {
    const started = performance.now();
    const inst = await server.register({ namespace: 'lat', logicalId: `agent-${i}`, ready: true });
    await page.locator(`tr[data-instance="${inst.instanceId}"]`).waitFor();
    samples.push(performance.now() - started);
  }
  console.log(summary('register-to-console-row', samples));
} finally {
  await browser.close();
  await server.stop();
}
