#!/usr/bin/env bash
# The TypeScript client's suite: dependencies from the committed lockfile (npm ci), the build
# (tsc, the contract copied into dist/proto), node's test runner against the server binary given
# (or ../../target/release/agent-registry). Usage: clients/typescript/test.sh [BINARY]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bin=$(realpath "${1:-$root/target/release/agent-registry}")
cd "$here"
npm ci --no-audit --no-fund --loglevel=error
AGENT_REGISTRY_BIN=$bin npm test --silent
