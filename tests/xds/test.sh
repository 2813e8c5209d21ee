#!/usr/bin/env bash
# The xDS end-to-end suite: a stock gRPC client (Python grpcio, its built-in xDS resolver and
# balancer) calls test services through the registry's ADS server. A fresh virtualenv with
# grpcio, pytest and the Python client library (to register the test services).
# Usage: tests/xds/test.sh [BINARY] [pytest args]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bin=$(realpath "${1:-$root/target/release/agent-registry}")
shift || true
venv=$(mktemp -d)/venv
trap 'rm -rf "$(dirname "$venv")"' EXIT
python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check grpcio pytest "$root/clients/python"
cd "$here"
AGENT_REGISTRY_BIN=$bin "$venv/bin/python" -m pytest -q -p no:cacheprovider "$@" .
