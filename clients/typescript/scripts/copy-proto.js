// Copies the contract (../../proto) into dist/proto at build time: the built package loads it
// from there with @grpc/proto-loader, so it needs nothing outside itself at run time.
const fs = require("fs");
const path = require("path");
const from = process.env.AGENT_REGISTRY_PROTO || path.join(__dirname, "..", "..", "..", "proto");
const to = path.join(__dirname, "..", "dist", "proto");
fs.rmSync(to, { recursive: true, force: true });
fs.cpSync(from, to, { recursive: true, filter: (p) => fs.statSync(p).isDirectory() || p.endsWith(".proto") });
// Every file src/proto.ts loads, and types.proto they import.
const missing = ["registry", "discovery", "catalog", "admin", "types"]
  .map((n) => `agentregistry/v1/${n}.proto`)
  .filter((f) => !fs.existsSync(path.join(to, f)));
if (missing.length > 0) {
  console.error(`${missing.join(", ")} not under ${from} (set AGENT_REGISTRY_PROTO)`);
  process.exit(1);
}
