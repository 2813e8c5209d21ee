#!/usr/bin/env bash
# The time from DrainInstance to the last call reaching the drained instance, as a stock gRPC
# client (Python grpcio, xDS) sees it. A fresh virtualenv with grpcio and the Python client.
#   bench/xds/drain.sh [BINARY] [--runs N] [--database-url postgres://…]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bin=$(realpath "${1:-$root/target/release/agent-registry}")
shift || true
venv=$(mktemp -d)/venv
trap 'rm -rf "$(dirname "$venv")"' EXIT
python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check grpcio "$root/clients/python"
"$venv/bin/python" "$here/drain.py" --binary "$bin" "$@"
