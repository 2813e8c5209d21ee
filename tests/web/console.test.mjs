// The web console in Debian's Chromium: a registration made through gRPC appears without a
// reload, a drain turns it DRAINING, the label filter narrows the table, an admin evicts from
// the detail page, and a token is asked for when the server has a tokens file. A screenshot is
// kept in $ARTIFACTS (a temp dir by default).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { CHROMIUM, Registry } from './registry.mjs';

const artifacts = process.env.ARTIFACTS || fs.mkdtempSync(path.join(os.tmpdir(), 'console-artifacts-'));
let server;
let browser;

before(async () => {
  server = await new Registry().start();
  browser = await chromium.launch(CHROMIUM);
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

const row = (page, id) => page.locator(`tr[data-instance="${id}"]`);

test('instances appear live, drain shows, the label filter narrows, admins evict', async () => {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  // A first instance, so the namespace exists and the table has something in it.
  const first = await server.register({
    namespace: 'prod', logicalId: 'planner', agentType: 'llm', version: '1.4.2',
    endpoint: '10.0.0.7:7000', capabilities: ['plan', 'tools'], labels: { zone: 'eu-1' }, ready: true,
  });
  await page.goto(`${server.url}/`);
  await page.getByRole('link', { name: 'prod', exact: true }).click();
  await row(page, first.instanceId).waitFor();
  await page.getByText(/live · revision/).waitFor();

  // A registration through gRPC appears without a reload.
  const navigations = [];
  page.on('framenavigated', (f) => { if (f === page.mainFrame()) navigations.push(f.url()); });
  const started = performance.now();
  const second = await server.register({
    namespace: 'prod', logicalId: 'critic', agentType: 'llm', version: '0.9.0',
    endpoint: '10.0.0.8:7000', capabilities: ['review'], labels: { zone: 'us-2' }, ready: true,
  });
  await row(page, second.instanceId).waitFor();
  console.log(`register → row in the browser: ${(performance.now() - started).toFixed(0)} ms`);
  assert.deepEqual(navigations, [], 'no reload');
  await assert.doesNotReject(row(page, second.instanceId).getByText('ALIVE').waitFor());

  // A drain turns it DRAINING (and, the view being ACTIVE, it stays listed only if still
  // active: use ALL to keep it in view).
  await page.selectOption('select[name=view]', 'all');
  await page.getByRole('button', { name: 'Filter' }).click();
  await row(page, second.instanceId).waitFor();
  await server.drain(second.instanceId);
  await row(page, second.instanceId).getByText('DRAINING').waitFor();
  await page.screenshot({ path: path.join(artifacts, 'console-live.png') });

  // The label filter narrows the table to the matching instance.
  await page.fill('input[name=label]', 'zone=eu-1');
  await page.getByRole('button', { name: 'Filter' }).click();
  await row(page, second.instanceId).waitFor({ state: 'detached' });
  await row(page, first.instanceId).waitFor();
  assert.equal(await page.locator('tbody tr').count(), 1);
  await page.screenshot({ path: path.join(artifacts, 'console-instances.png'), fullPage: true });

  // The registry's own state is shown.
  await page.getByText('Store:').waitFor();
  await page.getByText('Change-feed lag:').waitFor();

  // One instance's detail; an admin (the open registry) may evict it.
  await page.getByRole('link', { name: 'planner' }).click();
  await page.getByText(first.instanceId).waitFor();
  page.once('dialog', (d) => d.accept());
  await page.getByRole('button', { name: 'Evict' }).click();
  await page.getByTestId('status').getByText('DEAD').waitFor();
  assert.equal(await page.getByRole('button', { name: /Drain|Evict/ }).count(), 0, 'no actions on the dead');
  assert.ok(!(await page.locator('main').innerText()).includes('null'), 'nothing unset shows as "null"');
  await page.screenshot({ path: path.join(artifacts, 'console-instance.png'), fullPage: true });
  assert.deepEqual(errors, []);
  console.log(`screenshots in ${artifacts}`);
  await page.close();
});

test('with tokens the console asks for one, keeps it in the tab, and shows readers no actions', async () => {
  const entry = (name, role) => {
    const secret = crypto.randomBytes(24).toString('hex');
    const sha = crypto.createHash('sha256').update(secret).digest('hex');
    return [secret, `[[tokens]]\nname = "${name}"\nrole = "${role}"\nnamespaces = ["*"]\nsha256 = "${sha}"\n`];
  };
  const [reader, readerEntry] = entry('ops-reader', 'reader');
  const [admin, adminEntry] = entry('ops-admin', 'admin');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'console-tokens-'));
  const tokens = path.join(dir, 'tokens.toml');
  fs.writeFileSync(tokens, readerEntry + adminEntry);
  const guarded = await new Registry(['--auth-tokens-file', tokens], admin).start();
  try {
    const agent = await guarded.register({ namespace: 'prod', logicalId: 'worker', ready: true });
    const page = await browser.newPage();
    await page.goto(`${guarded.url}/#/instance/${agent.instanceId}`);
    await page.getByLabel('Token').fill('wrong');
    await page.getByRole('button', { name: 'Use token' }).click();
    await page.getByRole('alert').getByText(/unknown token/).waitFor();
    await page.getByLabel('Token').fill(reader);
    await page.getByRole('button', { name: 'Use token' }).click();
    await page.getByText('ops-reader · reader').waitFor();
    const stored = await page.evaluate(() => [sessionStorage.length, localStorage.length]);
    assert.deepEqual(stored, [1, 0], 'the token is in session storage only');
    // The instance page, without the admin actions.
    await page.getByText(agent.instanceId).waitFor();
    assert.equal(await page.getByRole('button', { name: /Drain|Evict/ }).count(), 0);
    // An admin token sees them.
    await page.getByRole('button', { name: 'Forget token' }).click();
    await page.getByLabel('Token').fill(admin);
    await page.getByRole('button', { name: 'Use token' }).click();
    await page.getByText('ops-admin · admin').waitFor();
    await page.getByRole('button', { name: 'Drain' }).waitFor();
    await page.getByRole('button', { name: 'Evict' }).waitFor();
    await page.close();
  } finally {
    await guarded.stop();
  }
});
