#!/usr/bin/env bash
# Installs the Python package (clients/python, stubs generated from proto/ as it builds) into a
# throwaway virtualenv, starts the server binary on a throwaway SQLite file, runs the agent and
# the discoverer against it, and fails unless both succeed. Needs python3 with venv.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bin=${AGENT_REGISTRY_BIN:-$root/target/debug/agent-registry}
work=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q --disable-pip-version-check "$root/clients/python"
py=$work/venv/bin/python
port=$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$bin" serve --listen "127.0.0.1:$port" --metrics-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 \
  --database-url "sqlite://$work/registry.db" >"$work/server.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
  "$py" -c "import socket; socket.create_connection(('127.0.0.1',$port),0.2)" 2>/dev/null && break
  sleep 0.1
done

id=$("$py" "$here/agent.py" --server "127.0.0.1:$port" --namespace interop --beats 3 --keep)
"$py" "$here/discoverer.py" --server "127.0.0.1:$port" --namespace interop --expect "$id"
echo "interop ok: $id"
