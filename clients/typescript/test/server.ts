// Starts the real server binary (AGENT_REGISTRY_BIN, else the workspace's release build) on a
// free port and a throwaway SQLite file; a test may kill it with SIGKILL and start it again.
import { ChildProcess, execFileSync, spawn } from "child_process";
import * as crypto from "crypto";
import * as fs from "fs";
import * as net from "net";
import * as os from "os";
import * as path from "path";
import * as grpc from "@grpc/grpc-js";

import { Client, RegistryError } from "../src";
import { AdminService } from "../src/proto";

const ROOT = path.join(__dirname, "..", "..", "..", "..");

export function binary(): string {
  if (process.env.AGENT_REGISTRY_BIN) return path.resolve(process.env.AGENT_REGISTRY_BIN);
  for (const profile of ["release", "debug"]) {
    const p = path.join(ROOT, "target", profile, "agent-registry");
    if (fs.existsSync(p)) return p;
  }
  throw new Error("no server binary: cargo build --release, or set AGENT_REGISTRY_BIN");
}

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

async function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const c = net.connect(port, "127.0.0.1", () => { c.destroy(); resolve(true); });
    c.on("error", () => resolve(false));
  });
}

export function tokenEntry(name: string, role: string, secret: string): string {
  const sha = crypto.createHash("sha256").update(secret).digest("hex");
  return `[[tokens]]\nname = "${name}"\nrole = "${role}"\nnamespaces = ["*"]\nsha256 = "${sha}"\n`;
}

export class Server {
  readonly dir = fs.mkdtempSync(path.join(os.tmpdir(), "agent-registry-ts-"));
  port = 0;
  private proc: ChildProcess | null = null;

  constructor(private readonly extra: string[] = []) {}

  get target(): string { return `127.0.0.1:${this.port}`; }

  async start(): Promise<this> {
    if (!this.port) this.port = await freePort();
    const log = fs.openSync(path.join(this.dir, "server.log"), "a");
    this.proc = spawn(binary(), [
      "serve", "--listen", this.target, "--metrics-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0",
      "--database-url", `sqlite://${path.join(this.dir, "registry.db")}`, ...this.extra,
    ], { stdio: ["ignore", log, log] });
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      if (await listening(this.port)) return this;
      if (this.proc.exitCode !== null) throw new Error(`server exited; see ${this.dir}/server.log`);
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error("server did not listen within 30 s");
  }

  /** SIGKILL: no shutdown, no final flush. */
  async kill(): Promise<void> {
    const p = this.proc;
    if (!p || p.exitCode !== null) return;
    const gone = new Promise((r) => p.once("exit", r));
    p.kill("SIGKILL");
    await gone;
  }

  async stop(): Promise<void> {
    const p = this.proc;
    if (p && p.exitCode === null) {
      const gone = new Promise((r) => p.once("exit", r));
      p.kill("SIGTERM");
      await gone;
    }
    fs.rmSync(this.dir, { recursive: true, force: true });
  }

  /** An admin call (no token) by name, e.g. ("EvictInstance", {instance_id}). */
  admin(method: string, req: object): Promise<unknown> {
    const c = new AdminService(this.target, grpc.credentials.createInsecure());
    return new Promise((resolve, reject) =>
      c[method](req, (e: unknown, r: unknown) => { c.close(); return e ? reject(e) : resolve(r); }),
    );
  }
}

/** A CA, a server certificate for 127.0.0.1 and a client certificate, made with openssl. */
export function makeCerts(dir: string): Record<string, string> {
  const sh = (...args: string[]) => execFileSync("openssl", args, { stdio: "ignore" });
  const p = (f: string) => path.join(dir, f);
  sh("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca", "-keyout", p("ca.key"), "-out", p("ca.pem"));
  for (const [name, ext] of [["server", "subjectAltName=IP:127.0.0.1,DNS:localhost"], ["client", "extendedKeyUsage=clientAuth"]]) {
    sh("req", "-newkey", "rsa:2048", "-nodes", "-subj", `/CN=${name}`, "-keyout", p(`${name}.key`), "-out", p(`${name}.csr`));
    fs.writeFileSync(p(`${name}.ext`), ext + "\n");
    sh("x509", "-req", "-in", p(`${name}.csr`), "-CA", p("ca.pem"), "-CAkey", p("ca.key"), "-CAcreateserial", "-days", "2", "-extfile", p(`${name}.ext`), "-out", p(`${name}.pem`));
  }
  return { ca: p("ca.pem"), serverCert: p("server.pem"), serverKey: p("server.key"), clientCert: p("client.pem"), clientKey: p("client.key") };
}

/** Waits until the client's connection to a restarted server is up again. A call made while
 * gRPC is still backing off from the refused reconnects fails fast with UNAVAILABLE without being
 * sent (and channels to one address share that state), so a test that writes right after a
 * restart first reads until the server answers. */
export async function reachable(client: Client): Promise<void> {
  await eventually(async () => {
    try {
      await client.discover("reachable", { view: "all" });
      return true;
    } catch (e) {
      if ((e as RegistryError).code !== "UNAVAILABLE") throw e;
      return false;
    }
  }, "the restarted server answers", 30);
}

export async function eventually(cond: () => Promise<boolean> | boolean, what = "condition", timeout = 20): Promise<void> {
  const deadline = Date.now() + timeout * 1000;
  while (Date.now() < deadline) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${what} did not hold within ${timeout} s`);
}
