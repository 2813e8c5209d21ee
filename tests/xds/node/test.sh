#!/usr/bin/env bash
# The xDS end-to-end check with Node's stock xDS client: @grpc/grpc-js-xds (over @grpc/grpc-js)
# resolves xds:///<logical_id>.xds through the registry's ADS server; calls reach every live
# instance, a drained one stops receiving calls within 2 s, a newly registered one starts.
# The registry is the server binary given (or target/release/agent-registry); its log is printed
# with XDS_E2E_SHOW_LOG=1.
# Needs: node (>= 20) and npm.
# Usage: tests/xds/node/test.sh [BINARY]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
bin=$(realpath "${1:-$root/target/release/agent-registry}")

cd "$here"
npm ci --no-audit --no-fund --loglevel=error
AGENT_REGISTRY_BIN=$bin node --test --test-timeout=120000 --test-force-exit xds.test.mjs
