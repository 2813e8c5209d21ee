// The console's Agents page in Debian's Chromium: search with skill and tag filters, each
// agent's state and live count, live updates (a new instance, a card published alone, a lapse
// to NO LIVE INSTANCES), and a card's JSON shown as text — markup in a card never runs.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
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

function card(name, description, skills) {
  return {
    name, description, version: '1.0.0',
    supportedInterfaces: [{ url: 'https://agents.example/a2a', protocolBinding: 'JSONRPC', protocolVersion: '1.0' }],
    capabilities: {}, defaultInputModes: ['text/plain'], defaultOutputModes: ['text/plain'],
    skills: skills.map(([id, tags]) => ({ id, name: id, description: `Does ${id}.`, tags })),
  };
}

const register = (logicalId, c) => server.register({
  namespace: 'cards', logicalId, ready: true, endpoint: `10.0.1.${Math.floor(Math.random() * 200)}:7000`,
  card: { kind: 'CARD_KIND_A2A', json: JSON.stringify(c) },
});

const row = (page, id) => page.locator(`tr[data-agent="${id}"]`);

test('agents: search and filters, state and live count, live updates, the card as text only', async () => {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  const hostile = '<img src=x onerror="window.__pwned=1">Translates text.';
  const translator = card('Translator', hostile, [['translate', ['language']], ['detect-language', ['language']]]);
  const first = await register('translator', translator);
  await register('summarizer', card('Summarizer', 'Summarizes long documents.', [['summarize', ['text']]]));

  // From the namespaces page to its agents.
  await page.goto(`${server.url}/`);
  await page.getByRole('link', { name: 'Agents in cards' }).click();
  await row(page, 'translator').waitFor();
  await row(page, 'summarizer').waitFor();
  await page.getByText(/live · revision/).waitFor();
  assert.equal(await row(page, 'translator').getByTestId('state').innerText(), 'LIVE');
  assert.equal(await row(page, 'translator').getByTestId('live-count').innerText(), '1');

  // A second instance raises the live count without a reload.
  const navigations = [];
  page.on('framenavigated', (f) => { if (f === page.mainFrame()) navigations.push(f.url()); });
  await register('translator', translator);
  await row(page, 'translator').getByTestId('live-count').getByText('2').waitFor();
  assert.deepEqual(navigations, [], 'no reload');

  // The search box ranks; the matched skill is marked.
  await page.getByLabel('Search').fill('translate');
  await page.getByRole('button', { name: 'Search' }).click();
  await row(page, 'summarizer').waitFor({ state: 'detached' });
  await row(page, 'translator').waitFor();
  assert.equal(await page.locator('tbody tr').count(), 1);
  assert.equal(await row(page, 'translator').locator('.tag.matched').first().innerText(), 'translate');

  // Tag and skill filters are exact.
  await page.getByLabel('Search').fill('');
  await page.getByLabel('Tags').fill('text');
  await page.getByRole('button', { name: 'Search' }).click();
  await row(page, 'translator').waitFor({ state: 'detached' });
  await row(page, 'summarizer').waitFor();
  await page.getByLabel('Tags').fill('');
  await page.getByLabel('Skills').fill('detect-language');
  await page.getByRole('button', { name: 'Search' }).click();
  await row(page, 'summarizer').waitFor({ state: 'detached' });
  await row(page, 'translator').waitFor();

  // Offline agents only when asked; a card published alone appears live (a bookmark wakes us).
  await page.getByLabel('Skills').fill('');
  await page.getByLabel('Include offline').check();
  await page.getByRole('button', { name: 'Search' }).click();
  await row(page, 'summarizer').waitFor();
  await server.publishCard('cards', 'planner', card('Planner', 'Plans trips.', [['plan', ['travel']]]));
  await row(page, 'planner').getByTestId('state').getByText('NO LIVE INSTANCES').waitFor();
  await page.screenshot({ path: path.join(artifacts, 'console-agents.png'), fullPage: true });

  // One agent: its skills, live instances and card, as text.
  await row(page, 'translator').getByRole('link', { name: 'Translator' }).click();
  const json = page.getByTestId('card-json');
  await json.waitFor();
  assert.ok((await json.innerText()).includes('"detect-language"'));
  await page.getByText(hostile, { exact: true }).waitFor();
  assert.equal(await page.locator('main img').count(), 0, 'markup in a card is not rendered');
  assert.equal(await page.evaluate(() => window.__pwned), undefined, 'nor run');
  await page.getByTestId('skills').locator('code', { hasText: 'detect-language' }).waitFor();
  await page.getByRole('link', { name: first.instanceId.slice(-8) }).waitFor();
  await page.screenshot({ path: path.join(artifacts, 'console-agent.png'), fullPage: true });

  // Its instances die: the page turns NO LIVE INSTANCES without a reload.
  const agent = (await server.call('catalog', 'getAgent', { namespace: 'cards', logicalId: 'translator' })).agent;
  for (const i of agent.liveInstances) await server.evict(i.instanceId);
  await page.getByTestId('state').getByText('NO LIVE INSTANCES').waitFor();
  await page.getByText('Nothing live serves this agent now.').waitFor();
  assert.deepEqual(errors, []);
  await page.close();
});
