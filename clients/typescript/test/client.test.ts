import { after, before, test } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "fs";
import * as path from "path";

import { Client, Keeper, RegistryError, WatchCache } from "../src";
import { Server, eventually, makeCerts, reachable, tokenEntry } from "./server";

let server: Server;
before(async () => { server = await new Server().start(); });
after(async () => { await server.stop(); });

test("register, heartbeats, discover", async () => {
  const client = new Client(server.target);
  const k = new Keeper(client, { namespace: "ts", logicalId: "planner", capabilities: ["plan"], leaseTtl: 6 }).start();
  await k.waitFor((k) => k.connected && k.acks >= 2);
  const found = await client.discover("ts", { view: "live", capabilities: ["plan"] });
  assert.deepEqual(found.map((i) => i.instanceId), [k.instanceId]);
  assert.equal(found[0].status, "ALIVE");
  assert.equal((await client.get(k.instanceId!)).leaseTtl, 6);
  await k.stop();
  const gone = await client.get(k.instanceId!);
  assert.equal(gone.status, "DEAD");
  assert.equal(gone.deathReason, "DEREGISTERED");
  client.close();
});

test("a killed and restarted registry keeps the same instance", async () => {
  const client = new Client(server.target);
  const k = new Keeper(client, { namespace: "ts", logicalId: "survivor", leaseTtl: 6 }).start();
  await k.waitFor((k) => k.connected && k.acks >= 1);
  const first = k.instanceId;
  await server.kill();
  await k.waitFor((k) => !k.connected);
  await server.start();
  const acks = k.acks;
  await k.waitFor((k) => k.connected && k.acks >= acks + 2);
  assert.equal(k.instanceId, first);
  assert.equal(k.registrations, 1, "resumed, never registered anew");
  const got = await client.get(first!);
  assert.equal(got.status, "ALIVE");
  assert.equal(got.deathReason, null);
  await k.stop();
  client.close();
});

test("evict: a new id, reported; drain: the drain event", async () => {
  const client = new Client(server.target);
  const k = new Keeper(client, { namespace: "ts", logicalId: "worker" }).start();
  const reregistered: string[] = [];
  let drained = 0;
  k.on("reregistered", (id) => reregistered.push(id));
  k.on("drain", () => (drained += 1));
  await k.waitFor((k) => k.connected);
  await server.admin("DrainInstance", { instance_id: k.instanceId, reason: "test" });
  await k.waitFor(() => drained === 1);
  assert.equal(k.status, "DRAINING");
  const old = k.instanceId;
  await server.admin("EvictInstance", { instance_id: old, reason: "test" });
  await k.waitFor((k) => k.instanceId !== null && k.instanceId !== old && k.connected);
  assert.deepEqual(reregistered, [k.instanceId]);
  assert.equal(k.registrations, 2);
  assert.equal((await client.get(old!)).deathReason, "EVICTED");
  await k.stop();
  client.close();
});

test("setStatus is reported on the stream", async () => {
  const client = new Client(server.target);
  const k = new Keeper(client, { namespace: "ts", logicalId: "busy" }).start();
  await k.waitFor((k) => k.connected);
  k.setStatus("DRAINING");
  await eventually(async () => (await client.get(k.instanceId!)).status === "DRAINING", "DRAINING stored");
  k.setStatus("ALIVE");
  await eventually(async () => (await client.get(k.instanceId!)).status === "ALIVE", "ALIVE stored");
  await k.stop();
  client.close();
});

test("the watch cache follows a registration, a death and a restart", async () => {
  const client = new Client(server.target);
  const cache = new WatchCache(client, "cached");
  try {
    await cache.waitFor((c) => c.synced);
    const a = await client.register({ namespace: "cached", logicalId: "a" });
    await cache.waitFor((c) => c.has(a.instanceId));
    await client.deregister(a.instanceId);
    await cache.waitFor((c) => !c.has(a.instanceId));
    await server.kill();
    await server.start();
    await reachable(client);
    const b = await client.register({ namespace: "cached", logicalId: "b" });
    await cache.waitFor((c) => c.has(b.instanceId));
    assert.deepEqual([...cache.keys()], [b.instanceId]);
  } finally {
    cache.close();
    client.close();
  }
});

test("bad input names the field and writes nothing", async () => {
  const client = new Client(server.target);
  await assert.rejects(client.register({ namespace: "bad", logicalId: "ok", labels: { "-bad": "x" } }), (e: RegistryError) => {
    assert.equal(e.code, "INVALID_ARGUMENT");
    assert.match(e.details, /labels/);
    return true;
  });
  assert.deepEqual(await client.discover("bad", { view: "all" }), []);
  client.close();
});

test("tokens, roles and mutual TLS", async () => {
  const dir = fs.mkdtempSync(path.join(server.dir, "tls-"));
  const certs = makeCerts(dir);
  const tokens = path.join(dir, "tokens.toml");
  fs.writeFileSync(tokens, tokenEntry("admin", "admin", "admin-secret") + tokenEntry("reader", "reader", "reader-secret"));
  const secured = await new Server([
    "--tls-cert", certs.serverCert, "--tls-key", certs.serverKey, "--tls-client-ca", certs.ca, "--auth-tokens-file", tokens,
  ]).start();
  try {
    const tls = { tlsCa: certs.ca, tlsCert: certs.clientCert, tlsKey: certs.clientKey };
    const reader = new Client(secured.target, { token: "reader-secret", ...tls });
    await assert.rejects(reader.register({ namespace: "tls", logicalId: "x" }), (e: RegistryError) => {
      assert.equal(e.code, "PERMISSION_DENIED");
      assert.match(e.details, /reader/);
      return true;
    });
    const anonymous = new Client(secured.target, tls);
    await assert.rejects(anonymous.discover("tls"), (e: RegistryError) => e.code === "UNAUTHENTICATED");
    const tokenFile = path.join(dir, "token");
    fs.writeFileSync(tokenFile, "admin-secret\n");
    const admin = new Client(`https://${secured.target}`, { tokenFile, ...tls });
    const k = new Keeper(admin, { namespace: "tls", logicalId: "a" }).start();
    await k.waitFor((k) => k.connected && k.acks >= 1);
    assert.deepEqual((await reader.discover("tls")).map((i) => i.instanceId), [k.instanceId]);
    await k.stop();
    for (const c of [reader, anonymous, admin]) c.close();
  } finally {
    await secured.stop();
  }
});
