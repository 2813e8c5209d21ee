#!/usr/bin/env bash
# Agent cards against implementations the registry did not write: the official A2A SDK
# (`a2a-sdk`) resolves cards through the registry's well-known path, and the `rfc8785` package
# canonicalizes them, to check the registry's digests. A fresh virtualenv; the release binary.
# Usage: tests/cards/test.sh [BINARY] [pytest args]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bin=$(realpath "${1:-$root/target/release/agent-registry}")
shift || true
venv=$(mktemp -d)/venv
trap 'rm -rf "$(dirname "$venv")"' EXIT
python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check -r "$here/requirements.txt"
cd "$here"
AGENT_REGISTRY_BIN=$bin "$venv/bin/python" -m pytest -q -p no:cacheprovider "$@" .
