// Agent cards against the real registry: registration with a card (digest first, bytes only on
// NOT_FOUND, watched on the wire by an interceptor), the catalog (search, agent, publish, cards
// by digest, versions) and the keeper with a card.
import { after, before, test } from "node:test";
import * as assert from "node:assert/strict";
import * as crypto from "crypto";
import * as grpc from "@grpc/grpc-js";

import { Card, Client, Keeper, RegistryError, cardDigest } from "../src";
import { Server } from "./server";

let server: Server;
before(async () => { server = await new Server().start(); });
after(async () => { await server.stop(); });

/** A fresh namespace for each test. */
const ns = () => `card-${crypto.randomBytes(4).toString("hex")}`;

/** An A2A 1.0 card with every required member. */
function a2a(name: string, skills: object[], extra: object = {}) {
  return {
    name,
    description: `${name}: an agent of the tests`,
    version: "1.0.0",
    supportedInterfaces: [{ url: `https://${name.toLowerCase()}.example/a2a`, protocolBinding: "JSONRPC", protocolVersion: "1.0" }],
    capabilities: {},
    defaultInputModes: ["text/plain"],
    defaultOutputModes: ["text/plain"],
    skills,
    ...extra,
  };
}

const PLANNER = a2a("Planner", [
  { id: "plan-trip", name: "Plan a trip", description: "Builds an itinerary.", tags: ["travel"], examples: ["A week in Lisbon"] },
  { id: "book-train", name: "Book a train", description: "Books rail tickets.", tags: ["travel", "rail"], inputModes: ["application/json"] },
]);
const FORECASTER = a2a("Forecaster", [
  { id: "forecast", name: "Forecast", description: "Tomorrow's weather, hour by hour.", tags: ["weather"] },
]);
const MCP_WEATHER = {
  name: "io.github.example/weather",
  description: "Weather data and forecasts",
  version: "1.0.2",
  remotes: [{ type: "streamable-http", url: "https://mcp.example/weather" }],
};

/** Every call's serialized request messages (the bytes grpc-js frames and sends: the same
 * `requestSerialize` on the same message) and its final status. */
function recorder() {
  const calls: { path: string; sent: Buffer[]; status?: string }[] = [];
  const interceptor: grpc.Interceptor = (options, nextCall) => {
    const def = options.method_definition;
    const call: { path: string; sent: Buffer[]; status?: string } = { path: def.path, sent: [] };
    calls.push(call);
    return new grpc.InterceptingCall(nextCall(options), {
      start(metadata, _listener, next) {
        next(metadata, { onReceiveStatus: (s, nxt) => { call.status = grpc.status[s.code]; nxt(s); } });
      },
      sendMessage(message, next) {
        call.sent.push(def.requestSerialize(message));
        next(message);
      },
    });
  };
  const registers = () => calls.filter((c) => c.path.endsWith("/Register"));
  return { calls, registers, interceptor };
}

test("cardDigest is sha256 of the RFC 8785 form; formatting does not change it", () => {
  // RFC 8785's own example (numbers and escapes) and its canonical form, as the server's test has it.
  const text = `{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
    "string": "\\u20ac$\\u000F\\u000aA'\\u0042\\u0022\\u005c\\\\\\"\\/", "literals": [null, true, false]}`;
  const canonical = `{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\\u000f\\nA'B\\"\\\\\\\\\\"/"}`;
  assert.equal(cardDigest(text), `sha256:${crypto.createHash("sha256").update(canonical).digest("hex")}`);
  assert.equal(cardDigest(JSON.stringify(PLANNER, null, 4)), cardDigest(PLANNER));
  assert.equal(cardDigest(new Card(JSON.stringify(PLANNER))), cardDigest(PLANNER));
  assert.notEqual(cardDigest({ ...PLANNER, version: "1.0.1" }), cardDigest(PLANNER));
  assert.throws(() => cardDigest("[1]"), TypeError);
  assert.throws(() => cardDigest("{"), TypeError);
});

test("a registered card: the agent is LIVE with it byte for byte, under the client's digest", async () => {
  const client = new Client(server.target);
  const namespace = ns();
  // Odd formatting and member order, a non-ASCII character: kept as sent, digest unmoved.
  const { name: _name, version: _version, description: _description, ...rest } = PLANNER;
  const text = `{ "version":"2.0.0",  "name" : "Planner",\n  "description": "Plans trips — by rail",${JSON.stringify(rest).slice(1)}`;
  const digest = cardDigest(text);
  const i = await client.register({ namespace, logicalId: "planner", endpoint: "10.0.0.7:9000", card: text });
  assert.equal(i.cardDigest, digest);
  const a = await client.getAgent(namespace, "planner");
  assert.equal(a.state, "LIVE");
  assert.equal(a.digest, digest, "the registry's digest is the client's");
  assert.equal(a.card?.json, text, "byte for byte");
  assert.equal(a.card?.kind, "a2a");
  assert.equal(a.card?.parse().version, "2.0.0");
  assert.deepEqual([a.name, a.version, a.liveCount], ["Planner", "2.0.0", 1]);
  assert.deepEqual(a.skills.map((s) => s.id), ["plan-trip", "book-train"]);
  assert.deepEqual(a.skills[1].inputModes, ["application/json"]);
  assert.deepEqual(a.liveInstances.map((l) => [l.instanceId, l.endpoint, l.cardDigest]), [[i.instanceId, "10.0.0.7:9000", digest]]);
  assert.equal((await client.getInstanceCard(i.instanceId)).card.json, text);
  client.close();
});

test("a card goes once: by digest first, its bytes only after NOT_FOUND", async () => {
  const rec = recorder();
  const client = new Client(server.target, { interceptors: [rec.interceptor] });
  const namespace = ns();
  const text = JSON.stringify(FORECASTER, null, 2);
  const digest = cardDigest(text);
  const bytes = Buffer.from(text);

  const first = await client.register({ namespace, logicalId: "forecaster", card: text });
  const [byDigest, withBytes, ...more] = rec.registers();
  assert.equal(more.length, 0);
  assert.equal(byDigest.status, "NOT_FOUND");
  assert.ok(byDigest.sent[0].includes(digest) && !byDigest.sent[0].includes(bytes), "the digest alone");
  assert.ok(byDigest.sent[0].length < bytes.length);
  assert.equal(withBytes.status, "OK");
  assert.ok(withBytes.sent[0].includes(bytes), "then the card's bytes");

  rec.calls.length = 0;
  const second = await client.register({ namespace, logicalId: "forecaster", card: FORECASTER }); // same card, as an object
  const [only, ...rest] = rec.registers();
  assert.equal(rest.length, 0, "one Register call");
  assert.equal(only.status, "OK");
  assert.ok(only.sent[0].includes(digest), "the digest");
  assert.ok(!only.sent[0].includes(Buffer.from('"Forecaster: an agent')), "none of the card");
  assert.notEqual(second.instanceId, first.instanceId);
  assert.equal(second.cardDigest, digest);
  const a = await client.getAgent(namespace, "forecaster");
  assert.equal(a.liveCount, 2);
  assert.equal(a.card?.json, text, "still the bytes first sent");
  client.close();
});

test("search: text and filters find the right agents, page by page, live unless asked", async () => {
  const client = new Client(server.target);
  const namespace = ns();
  await client.register({ namespace, logicalId: "planner", card: PLANNER });
  const forecaster = await client.register({ namespace, logicalId: "forecaster", card: FORECASTER });
  await client.register({ namespace, logicalId: "weather-mcp", card: MCP_WEATHER, cardKind: "mcp" });
  const ids = (p: { results: { agent: { logicalId: string } }[] }) => p.results.map((r) => r.agent.logicalId).sort();

  const weather = await client.searchAgents({ namespace, query: "weather" });
  assert.deepEqual(ids(weather), ["forecaster", "weather-mcp"]);
  assert.ok(weather.results.every((r) => r.score > 0 && r.agent.card === null && r.agent.state === "LIVE"));
  assert.ok(weather.revision > 0);
  const a2aOnly = await client.searchAgents({ namespace, query: "weather", kinds: ["a2a"] });
  assert.deepEqual(a2aOnly.results.map((r) => [r.agent.logicalId, r.matchedSkills]), [["forecaster", ["forecast"]]]);
  const mcp = await client.searchAgents({ namespace, kinds: ["mcp"] });
  assert.deepEqual(mcp.results.map((r) => [r.agent.logicalId, r.agent.kind, r.agent.name]), [["weather-mcp", "mcp", "io.github.example/weather"]]);
  assert.deepEqual(ids(await client.searchAgents({ namespace, tags: ["rail"] })), ["planner"]);
  assert.deepEqual(ids(await client.searchAgents({ namespace, tags: ["rail", "weather"] })), []);
  const skill = await client.searchAgents({ namespace, skills: ["book-train"] });
  assert.deepEqual(skill.results.map((r) => [r.agent.logicalId, r.matchedSkills]), [["planner", ["book-train"]]]);
  assert.deepEqual(ids(await client.searchAgents({ namespace, inputModes: ["application/json"] })), ["planner"]);
  assert.deepEqual(ids(await client.searchAgents({ namespace: ns(), query: "weather" })), [], "another namespace sees none");

  const first = await client.searchAgents({ namespace, pageSize: 1 });
  assert.deepEqual(ids(first), ["forecaster"], "without a query: by logical id");
  assert.notEqual(first.nextPageToken, "");
  const pages = [];
  for await (const page of client.searchAgentPages({ namespace, pageSize: 1 })) pages.push(page);
  assert.deepEqual(pages.map(ids), [["forecaster"], ["planner"], ["weather-mcp"]]);
  assert.deepEqual(pages.map((p) => p.nextPageToken === ""), [false, false, true]);
  const rest = [];
  for await (const page of client.searchAgentPages({ namespace, pageSize: 1, pageToken: first.nextPageToken })) rest.push(...ids(page));
  assert.deepEqual(rest, ["planner", "weather-mcp"]);

  await client.deregister(forecaster.instanceId);
  assert.deepEqual(ids(await client.searchAgents({ namespace, query: "weather" })), ["weather-mcp"]);
  const offline = await client.searchAgents({ namespace, query: "weather", includeOffline: true });
  assert.deepEqual(offline.results.map((r) => [r.agent.logicalId, r.agent.state]).sort(), [["forecaster", "NO_LIVE_INSTANCES"], ["weather-mcp", "LIVE"]]);
  await assert.rejects(client.searchAgents({ namespace, pageSize: -1 }), (e: RegistryError) => e.code === "INVALID_ARGUMENT");
  client.close();
});

test("an invalid card is refused, naming its JSON path; nothing is registered", async () => {
  const client = new Client(server.target);
  const namespace = ns();
  const noId = a2a("Broken", [{ name: "Nameless", description: "No id.", tags: [] }]);
  await assert.rejects(client.register({ namespace, logicalId: "broken", card: noId }), (e: RegistryError) => {
    assert.equal(e.code, "INVALID_ARGUMENT");
    assert.match(e.details, /card\.skills\[0\]\.id/);
    return true;
  });
  // Not one JSON object: no digest, so the bytes go at once and the registry names the card.
  await assert.rejects(client.register({ namespace, logicalId: "broken", card: "[1, 2]" }), (e: RegistryError) => {
    assert.equal(e.code, "INVALID_ARGUMENT");
    assert.match(e.details, /^card\b/);
    return true;
  });
  await assert.rejects(client.register({ namespace, logicalId: "broken", card: MCP_WEATHER }), (e: RegistryError) => {
    assert.equal(e.code, "INVALID_ARGUMENT", "an MCP server.json read as the default kind, A2A");
    return true;
  });
  await assert.rejects(client.publishCard(namespace, "broken", { ...MCP_WEATHER, version: "latest" }, "mcp"), (e: RegistryError) =>
    e.code === "INVALID_ARGUMENT" && /card\.version/.test(e.details));
  await assert.rejects(client.register({ namespace, logicalId: "broken", cardDigest: cardDigest(PLANNER) }), (e: RegistryError) =>
    e.code === "NOT_FOUND");
  await assert.rejects(client.register({ namespace, logicalId: "x", card: PLANNER, cardDigest: "sha256:00" }), TypeError);
  assert.deepEqual(await client.discover(namespace, { view: "all" }), []);
  await assert.rejects(client.getAgent(namespace, "broken"), (e: RegistryError) => e.code === "NOT_FOUND");
  client.close();
});

test("publishCard then getCard byte for byte; versions; a registration by digest", async () => {
  const client = new Client(server.target);
  const namespace = ns();
  // A card of this test's own: an unscoped getCard answers any stored copy of a digest, and
  // another namespace may hold the same card formatted otherwise.
  const mine = { ...PLANNER, description: `Plans trips in ${namespace}` };
  const v1 = JSON.stringify(mine, null, 4);
  const v2 = JSON.stringify({ ...mine, version: "1.1.0" });
  const p1 = await client.publishCard(namespace, "planner", v1);
  assert.equal(p1.digest, cardDigest(v1));
  assert.equal(p1.agent.state, "NO_LIVE_INSTANCES");
  const got = await client.getCard(p1.digest);
  assert.deepEqual([got.namespace, got.logicalId, got.digest, got.card.kind], [namespace, "planner", p1.digest, "a2a"]);
  assert.equal(got.card.json, v1, "byte for byte");
  assert.equal((await client.getCard(p1.digest, { namespace, logicalId: "planner" })).card.json, v1);
  await assert.rejects(client.getCard(p1.digest, { namespace, logicalId: "other" }), (e: RegistryError) => e.code === "NOT_FOUND");

  const mcp = await client.publishCard(namespace, "weather", new Card(JSON.stringify(MCP_WEATHER), "mcp"));
  assert.equal((await client.getCard(mcp.digest)).card.kind, "mcp");

  const p2 = await client.publishCard(namespace, "planner", v2);
  const versions = await client.listCardVersions(namespace, "planner");
  assert.deepEqual(versions.map((v) => [v.digest, v.version, v.current]), [[p2.digest, "1.1.0", true], [p1.digest, "1.0.0", false]]);
  const offline = await client.getAgent(namespace, "planner");
  assert.deepEqual([offline.state, offline.digest, offline.card?.json], ["NO_LIVE_INSTANCES", p2.digest, v2]);

  // A replica of the older version names it by digest: the active instance's card is current.
  const i = await client.register({ namespace, logicalId: "planner", cardDigest: p1.digest });
  assert.equal(i.cardDigest, p1.digest);
  const live = await client.getAgent(namespace, "planner");
  assert.deepEqual([live.state, live.digest, live.version, live.card?.json], ["LIVE", p1.digest, "1.0.0", v1]);
  const served = await client.listCardVersions(namespace, "planner");
  assert.deepEqual(served.map((v) => [v.digest, v.liveCount, v.current]), [[p2.digest, 0, false], [p1.digest, 1, true]]);
  client.close();
});

test("the keeper registers with its card", async () => {
  const client = new Client(server.target);
  const namespace = ns();
  const k = new Keeper(client, { namespace, logicalId: "forecaster", card: FORECASTER, leaseTtl: 6 }).start();
  await k.waitFor((k) => k.connected && k.acks >= 1);
  const a = await client.getAgent(namespace, "forecaster");
  assert.equal(a.state, "LIVE");
  assert.equal(a.digest, cardDigest(FORECASTER));
  assert.equal(a.card?.json, JSON.stringify(FORECASTER));
  assert.deepEqual(a.liveInstances.map((l) => l.instanceId), [k.instanceId]);
  assert.equal((await client.get(k.instanceId!)).cardDigest, a.digest);
  await k.stop();
  assert.equal((await client.getAgent(namespace, "forecaster")).state, "NO_LIVE_INSTANCES");

  const bad = new Keeper(client, { namespace, logicalId: "bad", card: a2a("Bad", [{ id: "x" }]) });
  const failed = new Promise((resolve) => bad.once("error", resolve));
  bad.start();
  const e = (await failed) as RegistryError;
  assert.equal(e.code, "INVALID_ARGUMENT");
  assert.match(e.details, /card\.skills\[0\]\.name/);
  await assert.rejects(bad.stop(), (err) => err === e);
  client.close();
});
