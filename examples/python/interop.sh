#!/usr/bin/env bash
# Generates Python stubs from proto/, starts the server binary on a throwaway SQLite file, runs
# the agent and the discoverer against it, and fails unless both succeed: a second, independent
# gRPC implementation talking to ours. Needs python3 with grpcio and grpcio-tools.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bin=${AGENT_REGISTRY_BIN:-$root/target/debug/agent-registry}
work=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

python3 -m grpc_tools.protoc -I "$root/proto" --python_out="$work" --grpc_python_out="$work" \
  "$root"/proto/agentregistry/v1/*.proto
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$bin" serve --listen "127.0.0.1:$port" --metrics-listen 127.0.0.1:0 \
  --database-url "sqlite://$work/registry.db" >"$work/server.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
  python3 -c "import socket; socket.create_connection(('127.0.0.1',$port),0.2)" 2>/dev/null && break
  sleep 0.1
done

export PYTHONPATH=$work
id=$(python3 "$here/agent.py" --server "127.0.0.1:$port" --namespace interop --beats 3)
python3 "$here/discoverer.py" --server "127.0.0.1:$port" --namespace interop --expect "$id"
echo "interop ok: $id"
