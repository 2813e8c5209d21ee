#!/usr/bin/env bash
# The HTTP API and the console against the server binary given (or target/release/agent-registry):
#   1. the OpenAPI document against the live server: schemathesis generates requests for every
#      documented operation and checks that none is a server error and that every status,
#      content type, header and body is the one documented; the SSE watch, which never ends,
#      is checked apart (it answers `text/event-stream` and opens with `snapshot`);
#   2. the console in Debian's Chromium (playwright-core; node's test runner): the instance
#      pages (console.test.mjs) and the Agents pages (agents.test.mjs).
# Screenshots go to $ARTIFACTS (default: a new temp dir, printed).
# Needs: node/npm, /usr/bin/chromium (or $CHROMIUM), and schemathesis on PATH (or $SCHEMATHESIS).
# Usage: tests/web/test.sh [BINARY]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bin=$(realpath "${1:-$root/target/release/agent-registry}")
schemathesis=${SCHEMATHESIS:-schemathesis}
export ARTIFACTS=${ARTIFACTS:-$(mktemp -d "${TMPDIR:-/tmp}/agent-registry-console.XXXXXX")}

work=$(mktemp -d)
server_pid=
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
grpc_port=$(free_port)
http_port=$(free_port)
"$bin" serve --listen "127.0.0.1:$grpc_port" --metrics-listen 127.0.0.1:0 \
  --http-listen "127.0.0.1:$http_port" --database-url "sqlite://$work/registry.db" \
  >"$work/server.log" 2>&1 &
server_pid=$!
base=http://127.0.0.1:$http_port
for _ in $(seq 1 100); do curl -fs "$base/v1/caller" >/dev/null && break; sleep 0.1; done

# Something to find, so reads reach their logic rather than only NOT_FOUND.
curl -fsS "$base/v1/namespaces/demo/instances" \
  --json '{"logicalId":"planner","ready":true,"labels":{"zone":"eu-1"},"capabilities":["plan"]}' >/dev/null

echo "== OpenAPI document against the live server (schemathesis)"
"$schemathesis" run "$base/openapi.json" --no-color --seed 1 --max-examples 30 \
  --exclude-path '/v1/namespaces/{namespace}/watch' \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance
echo "== SSE watch"
sse=$(curl -sN --max-time 3 -H 'accept: text/event-stream' "$base/v1/namespaces/demo/watch" -D "$work/headers" || true)
grep -qi '^content-type: text/event-stream' "$work/headers" || { echo "watch: not an event stream"; exit 1; }
echo "$sse" | head -1 | grep -q '^event: snapshot' || { echo "watch: no snapshot first: $sse"; exit 1; }
echo "$sse" | grep -q '^event: bookmark' || { echo "watch: no bookmark after the snapshot"; exit 1; }
echo "watch answers text/event-stream: snapshot, put, bookmark"
kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=

echo "== the console in Chromium"
cd "$here"
npm ci --no-audit --no-fund --loglevel=error
AGENT_REGISTRY_BIN=$bin npm test --silent
echo "console screenshots: $ARTIFACTS"
