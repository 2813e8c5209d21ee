#!/usr/bin/env bash
# The Python client's suite: a fresh virtualenv, the package installed from this directory (its
# stubs generated from ../../proto as it builds), pytest against the server binary given (or
# ../../target/release/agent-registry). Usage: clients/python/test.sh [BINARY] [pytest args]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bin=$(realpath "${1:-$root/target/release/agent-registry}")
shift || true
venv=$(mktemp -d)/venv
trap 'rm -rf "$(dirname "$venv")"' EXIT
python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check "$here[test]"
# From the tests' directory, so the installed package (not the source tree) is imported.
cd "$here/tests"
AGENT_REGISTRY_BIN=$bin "$venv/bin/python" -m pytest -q -p no:cacheprovider "$@" .
