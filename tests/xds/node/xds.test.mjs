// Node's stock xDS client (@grpc/grpc-js-xds over @grpc/grpc-js) resolves
// xds:///<logical_id>.<namespace> through the registry's ADS server and follows it: calls reach
// every live instance, a drained one stops receiving calls within 2 s, a new one starts.
// The registry is the release binary (or $AGENT_REGISTRY_BIN) on a free port and a throwaway
// SQLite file; registrations and the drain go through its gRPC API (clients generated at run
// time from proto/ by @grpc/proto-loader). XDS_E2E_SHOW_LOG=1 prints the registry's log.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const NAMESPACE = 'xds';
const LEASE_SECONDS = 300; // no heartbeats: the lease outlives the test (the server allows 1 h)

// One unary method, raw bytes both ways: a generic definition, no protoc.
const raw = (b) => b;
const WHO = {
  Name: {
    path: '/xdstest.Who/Name',
    requestStream: false,
    responseStream: false,
    requestSerialize: raw,
    requestDeserialize: raw,
    responseSerialize: raw,
    responseDeserialize: raw,
  },
};

function binary() {
  if (process.env.AGENT_REGISTRY_BIN) return path.resolve(process.env.AGENT_REGISTRY_BIN);
  const p = path.join(ROOT, 'target', 'release', 'agent-registry');
  if (fs.existsSync(p)) return p;
  throw new Error('no server binary: cargo build --release, or set AGENT_REGISTRY_BIN');
}

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function listening(port) {
  return new Promise((resolve) => {
    const c = net.connect(port, '127.0.0.1', () => { c.destroy(); resolve(true); });
    c.on('error', () => resolve(false));
  });
}

const unary = (client, method, request) => new Promise((resolve, reject) => {
  client[method](request, { deadline: Date.now() + 10_000 }, (err, reply) => (err ? reject(err) : resolve(reply)));
});

class Registry {
  constructor() {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'agent-registry-xds-node-'));
    this.logPath = path.join(this.dir, 'registry.log');
  }

  get target() { return `127.0.0.1:${this.port}`; }

  async start() {
    this.port = await freePort();
    const log = fs.openSync(this.logPath, 'a');
    this.proc = spawn(binary(), [
      'serve', '--listen', this.target, '--metrics-listen', '127.0.0.1:0', '--http-listen', '',
      '--database-url', `sqlite://${path.join(this.dir, 'registry.db')}`,
    ], {
      stdio: ['ignore', log, log],
      env: { ...process.env, RUST_LOG: process.env.RUST_LOG || 'info,agent_registry::xds=debug' },
    });
    fs.closeSync(log);
    const deadline = Date.now() + 30_000;
    while (!(await listening(this.port))) {
      if (this.proc.exitCode !== null) throw new Error(`registry exited; see ${this.logPath}`);
      if (Date.now() > deadline) throw new Error('registry did not listen within 30 s');
      await sleep(50);
    }
    const def = protoLoader.loadSync(
      ['agentregistry/v1/registry.proto', 'agentregistry/v1/admin.proto'],
      { includeDirs: [path.join(ROOT, 'proto')], keepCase: false, longs: String, enums: String, defaults: true },
    );
    const pkg = grpc.loadPackageDefinition(def).agentregistry.v1;
    const creds = grpc.credentials.createInsecure();
    this.registry = new pkg.RegistryService(this.target, creds);
    this.admin = new pkg.AdminService(this.target, creds);
    return this;
  }

  /** The bootstrap `agent-registry ctl xds-bootstrap` writes for this registry, in a file. */
  bootstrap() {
    const json = execFileSync(binary(), [
      'ctl', 'xds-bootstrap', '--server', this.target, '--node-id', 'xds-e2e-node',
    ], { encoding: 'utf8' });
    const file = path.join(this.dir, 'bootstrap.json');
    fs.writeFileSync(file, json);
    return file;
  }

  async register(logicalId, backend) {
    const reply = await unary(this.registry, 'register', {
      namespace: NAMESPACE, logicalId, endpoint: backend.endpoint, ready: true,
      leaseTtl: { seconds: LEASE_SECONDS },
    });
    return reply.instance.instanceId;
  }

  async drain(instanceId) {
    await unary(this.admin, 'drainInstance', { instanceId, reason: 'xds node e2e' });
  }

  async stop() {
    this.registry?.close();
    this.admin?.close();
    const p = this.proc;
    if (p && p.exitCode === null) {
      const gone = new Promise((r) => p.once('exit', r));
      p.kill('SIGTERM');
      await gone;
    }
    if (process.env.XDS_E2E_SHOW_LOG) process.stdout.write(fs.readFileSync(this.logPath, 'utf8'));
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

/** A gRPC server on 127.0.0.1 answering WHO.Name with its name. */
async function backend(name) {
  const server = new grpc.Server();
  const b = { name, calls: 0, server };
  server.addService(WHO, {
    Name: (_call, callback) => { b.calls += 1; callback(null, Buffer.from(name)); },
  });
  const port = await new Promise((resolve, reject) => {
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p)));
  });
  b.endpoint = `127.0.0.1:${port}`;
  return b;
}

function call(client, timeoutMs = 5_000) {
  return new Promise((resolve, reject) => {
    client.makeUnaryRequest(
      WHO.Name.path, raw, raw, Buffer.alloc(0), new grpc.Metadata({ waitForReady: true }),
      { deadline: Date.now() + timeoutMs },
      (err, reply) => (err ? reject(err) : resolve(reply.toString())),
    );
  });
}

async function names(client, n = 30) {
  const out = [];
  for (let i = 0; i < n; i += 1) out.push(await call(client));
  return out;
}

const setOf = (xs) => [...new Set(xs)].sort();

async function eventually(predicate, seconds, what) {
  const deadline = performance.now() + seconds * 1000;
  while (performance.now() < deadline) {
    if (await predicate()) return;
    await sleep(50);
  }
  assert.fail(`not within ${seconds} s: ${what}`);
}

let registry;
const started = [];

before(async () => {
  registry = await new Registry().start();
  // grpc-js-xds reads the bootstrap when the first xds: channel needs it; set it beforehand.
  process.env.GRPC_XDS_BOOTSTRAP = registry.bootstrap();
  const xds = await import('@grpc/grpc-js-xds');
  (xds.register ?? xds.default.register)();
});

after(async () => {
  for (const b of started) b.server.forceShutdown();
  await registry?.stop();
});

test('calls reach every live instance, stop reaching a drained one within 2 s, reach a new one', async (t) => {
  const logicalId = `svc-${crypto.randomBytes(4).toString('hex')}`;
  const [a, b, c] = await Promise.all(['a', 'b', 'c'].map(backend));
  started.push(a, b, c);
  const ia = await registry.register(logicalId, a);
  await registry.register(logicalId, b);
  await registry.register(logicalId, c);
  const client = new grpc.Client(`xds:///${logicalId}.${NAMESPACE}`, grpc.credentials.createInsecure());
  try {
    let t0 = performance.now();
    await eventually(async () => setOf(await names(client)).join() === 'a,b,c', 20, 'calls reach all three');
    t.diagnostic(`all three reached after ${Math.round(performance.now() - t0)} ms`);

    await registry.drain(ia);
    await sleep(2_000);
    const later = await names(client, 60);
    assert.equal(later.filter((n) => n === 'a').length, 0, `a still called ${later.filter((n) => n === 'a').length}/60 times 2 s after its drain`);
    assert.deepEqual(setOf(later), ['b', 'c']);

    const d = await backend('d');
    started.push(d);
    await registry.register(logicalId, d);
    t0 = performance.now();
    await eventually(async () => setOf(await names(client)).join() === 'b,c,d', 5, 'the fourth receives calls');
    t.diagnostic(`d reached ${Math.round(performance.now() - t0)} ms after its registration`);
  } finally {
    client.close();
  }
});
