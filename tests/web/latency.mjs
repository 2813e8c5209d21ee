// A measurement, not a test (BENCHMARKS.md): the time from a Register made through gRPC to its
// row in the console's live table in Chromium, N times (default 50), one at a time.
//   node tests/web/latency.mjs [N]     (after npm ci in tests/web; AGENT_REGISTRY_BIN or target/)
import { chromium } from 'playwright-core';
import { CHROMIUM, Registry } from './registry.mjs';

const n = Number(process.argv[2] || 50);
const server = await new Registry().start();
const browser = await chromium.launch(CHROMIUM);
try {
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
  samples.sort((a, b) => a - b);
  const q = (p) => samples[Math.min(samples.length - 1, Math.floor(p * samples.length))].toFixed(0);
  console.log(JSON.stringify({ scenario: 'register-to-console-row', n, p50_ms: +q(0.5), p90_ms: +q(0.9), p99_ms: +q(0.99), max_ms: +samples.at(-1).toFixed(0) }));
} finally {
  await browser.close();
  await server.stop();
}
