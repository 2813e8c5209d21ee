// The release binary on free ports and a throwaway SQLite file, and a gRPC client of it
// (clients generated at run time from proto/ by @grpc/proto-loader) for the writes a test or a
// measurement makes behind the console's back.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

export function binary() {
  if (process.env.AGENT_REGISTRY_BIN) return path.resolve(process.env.AGENT_REGISTRY_BIN);
  for (const profile of ['release', 'debug']) {
    const p = path.join(ROOT, 'target', profile, 'agent-registry');
    if (fs.existsSync(p)) return p;
  }
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

export class Registry {
  /** `extra`: more flags; `token`: the bearer token the gRPC calls send. */
  constructor(extra = [], token = null) {
    this.extra = extra;
    this.token = token;
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'agent-registry-web-'));
  }

  async start() {
    this.grpcPort = await freePort();
    this.httpPort = await freePort();
    const log = fs.openSync(path.join(this.dir, 'server.log'), 'a');
    this.proc = spawn(binary(), [
      'serve', '--listen', `127.0.0.1:${this.grpcPort}`, '--metrics-listen', '127.0.0.1:0',
      '--http-listen', `127.0.0.1:${this.httpPort}`,
      '--database-url', `sqlite://${path.join(this.dir, 'registry.db')}`, ...this.extra,
    ], { stdio: ['ignore', log, log] });
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      if (await listening(this.httpPort) && await listening(this.grpcPort)) break;
      if (this.proc.exitCode !== null) throw new Error(`server exited; see ${this.dir}/server.log`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const def = protoLoader.loadSync(
      ['agentregistry/v1/registry.proto', 'agentregistry/v1/admin.proto', 'agentregistry/v1/catalog.proto'],
      { includeDirs: [path.join(ROOT, 'proto')], keepCase: false, longs: String, enums: String, defaults: true },
    );
    const pkg = grpc.loadPackageDefinition(def).agentregistry.v1;
    const target = `127.0.0.1:${this.grpcPort}`;
    const creds = grpc.credentials.createInsecure();
    this.registry = new pkg.RegistryService(target, creds);
    this.admin = new pkg.AdminService(target, creds);
    this.catalog = new pkg.CatalogService(target, creds);
    return this;
  }

  get url() { return `http://127.0.0.1:${this.httpPort}`; }

  call(client, method, request) {
    const metadata = new grpc.Metadata();
    if (this.token) metadata.set('authorization', `Bearer ${this.token}`);
    return new Promise((resolve, reject) => {
      this[client][method](request, metadata, (err, reply) => (err ? reject(err) : resolve(reply)));
    });
  }

  /** Registers through gRPC; the stored instance. */
  async register(request) {
    return (await this.call('registry', 'register', request)).instance;
  }

  async evict(instanceId) {
    return (await this.call('admin', 'evictInstance', { instanceId, reason: 'test' })).instance;
  }

  /** Publishes `card` (an object) for an agent, ahead of any instance; the reply. */
  async publishCard(namespace, logicalId, card) {
    return this.call('catalog', 'publishCard', { namespace, logicalId, card: { kind: 'CARD_KIND_A2A', json: JSON.stringify(card) } });
  }

  async drain(instanceId) {
    return (await this.call('admin', 'drainInstance', { instanceId, reason: 'test' })).instance;
  }

  async stop() {
    this.registry?.close();
    this.admin?.close();
    this.catalog?.close();
    const p = this.proc;
    if (!p || p.exitCode !== null) return;
    const gone = new Promise((r) => p.once('exit', r));
    p.kill('SIGTERM');
    await gone;
  }
}

export const CHROMIUM = {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu'],
};
