#!/usr/bin/env bash
# Runs the image deploy/image/build.sh made the way a container runtime would with no arguments
# (the image's ENTRYPOINT + CMD, as its USER, in its WORKDIR) and checks that it serves on the
# embedded SQLite default:
#   - grpc.health.v1 overall entry "" SERVING, and agentregistry.v1.Liveness SERVING;
#   - the server process runs as uid 10001, not root;
#   - a Register + heartbeats and a Discover + Watch through it (examples/python/agent.py and
#     discoverer.py on the Python client library, its stubs generated from proto/);
#   - Prometheus metrics on 9090 count the registration;
#   - the HTTP API on 8080 lists the registered instance, and serves the console;
#   - SIGTERM shuts it down cleanly (exit 0);
#   - the SQLite file is in the data directory /var/lib/agent-registry, owned by uid 10001, and
#     nothing was written anywhere else (so readOnlyRootFilesystem holds);
#   - `sidecar --help` and `ctl --help` work through the entrypoint.
#
#   deploy/image/ci-check.sh [TAG]        # default tag: dev
#
# `buildah run --isolation chroot` on a working container made from the image (podman run may
# fail in a sandbox that refuses setrlimit). buildah run needs the command spelled out and does
# not apply ENTRYPOINT, so the command is the image's own Entrypoint + Cmd, read from its config;
# user and working directory come from the image config as they would with any runtime. The
# process shares the host's network: gRPC on 127.0.0.1:50051, the HTTP API on 127.0.0.1:8080,
# metrics on 127.0.0.1:9090, which must be free. The server is stopped and the working container removed on exit, even on failure.
#
# Needs root, buildah, and $PYTHON (python3) with grpcio, grpcio-tools, grpcio-health-checking and
# rfc8785 (the client library's dependencies).
set -euo pipefail

tag=${1:-dev}
image=localhost/agent-registry:$tag
root=$(cd "$(dirname "$0")/../.." && pwd)
PYTHON=${PYTHON:-python3}
grpc_addr=127.0.0.1:50051
metrics_url=http://127.0.0.1:9090/metrics
data_dir=/var/lib/agent-registry

bah() { buildah --storage-driver vfs "$@"; }
log() { echo "ci-check.sh: $*" >&2; }
fail() { log "FAIL: $*"; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/agent-registry-ci-check.XXXXXX")
ctr=
run_pid=
server_pid=

# Every process started under the `buildah run` process (its chroot helper, the server).
descendants() {
  "$PYTHON" - "$1" <<'EOF'
import os, sys
children = {}
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        with open(f"/proc/{pid}/stat") as f:
            ppid = int(f.read().rsplit(")", 1)[1].split()[1])
    except OSError:
        continue
    children.setdefault(ppid, []).append(int(pid))
todo, seen = [int(sys.argv[1])], []
while todo:
    for child in children.get(todo.pop(), []):
        seen.append(child)
        todo.append(child)
print(" ".join(map(str, seen)))
EOF
}

# The server: the process under buildah run that runs the image's binary as uid 10001.
find_server() {
  local p
  for p in $(descendants "$run_pid"); do
    if grep -qs '^Uid:[[:space:]]*10001[[:space:]]' "/proc/$p/status" \
       && grep -qs agent-registry "/proc/$p/cmdline"; then
      server_pid=$p
    fi
  done
}

stop_server() {
  # The server first (SIGTERM: its graceful shutdown; buildah's chroot helper would SIGKILL it),
  # then whatever is left under buildah run.
  local p
  [ -z "$server_pid" ] && [ -n "$run_pid" ] && find_server
  [ -n "$server_pid" ] && kill -TERM "$server_pid" 2>/dev/null
  if [ -n "$run_pid" ]; then
    for _ in $(seq 1 150); do kill -0 "$run_pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$run_pid" 2>/dev/null; then
      log "the server did not stop within 15 s of SIGTERM: killing it"
      for p in $(descendants "$run_pid") "$run_pid"; do kill -KILL "$p" 2>/dev/null; done
    fi
    wait "$run_pid" 2>/dev/null || true
  fi
}

cleanup() {
  local rc=$?
  set +e
  stop_server
  [ -n "$ctr" ] && bah rm "$ctr" >/dev/null 2>&1
  if [ "$rc" != 0 ] && [ -s "$work/server.log" ]; then
    log "server log (last 40 lines):"
    tail -n 40 "$work/server.log" >&2
  fi
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
trap "exit 130" INT
trap "exit 143" TERM

[ "$(id -u)" = 0 ] || fail "needs root (buildah with chroot isolation)"
"$PYTHON" -c 'import grpc, grpc_tools, grpc_health.v1, rfc8785' 2>/dev/null \
  || fail "$PYTHON needs grpcio grpcio-tools grpcio-health-checking rfc8785 (pip install them)"
bah inspect --type image "$image" >"$work/image.json" 2>/dev/null \
  || fail "no image $image: run deploy/image/build.sh $tag first"
for port in 50051 8080 9090; do
  "$PYTHON" -c "import socket,sys; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('0.0.0.0',$port))" \
    2>/dev/null || fail "port $port is in use on this machine (the image's server listens there)"
done

# The image's default command and user, from its config.
mapfile -t default_cmd < <("$PYTHON" -c '
import json, sys
c = json.load(open(sys.argv[1]))["OCIv1"]["config"]
for a in (c.get("Entrypoint") or []) + (c.get("Cmd") or []): print(a)' "$work/image.json")
mapfile -t entrypoint < <("$PYTHON" -c '
import json, sys
for a in json.load(open(sys.argv[1]))["OCIv1"]["config"].get("Entrypoint") or []: print(a)' \
  "$work/image.json")
image_user=$("$PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))["OCIv1"]["config"].get("User",""))' "$work/image.json")
log "image $image: user '$image_user', default command: ${default_cmd[*]}"
[ "${#default_cmd[@]}" -gt 0 ] || fail "the image has no ENTRYPOINT/CMD"
case $image_user in ""|0|0:*|root|root:*) fail "the image runs as root (USER '$image_user')" ;; esac

ctr=$(bah from --pull=never --name "agent-registry-ci-check-$$" "$image")
touch "$work/started"
sleep 1 # so anything the server writes is strictly newer than the marker
bah run --isolation chroot "$ctr" -- "${default_cmd[@]}" >"$work/server.log" 2>&1 &
run_pid=$!

# Python stubs from proto/ (what the Python client library builds on).
"$PYTHON" -m grpc_tools.protoc -I "$root/proto" --python_out="$work" --grpc_python_out="$work" \
  "$root"/proto/agentregistry/v1/*.proto
# The Python client library from its source (clients/python) on the stubs generated here.
export PYTHONPATH=$work:$root/clients/python

cat >"$work/health.py" <<'EOF'
"""health.py ADDR SERVICE WAIT_SECONDS: exit 0 once SERVICE is SERVING, 1 when WAIT_SECONDS pass."""
import sys, time
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

addr, service, wait = sys.argv[1], sys.argv[2], float(sys.argv[3])
stub = health_pb2_grpc.HealthStub(grpc.insecure_channel(addr))
deadline, last = time.monotonic() + wait, "no answer"
while True:
    try:
        status = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=2).status
        last = health_pb2.HealthCheckResponse.ServingStatus.Name(status)
        if status == health_pb2.HealthCheckResponse.SERVING:
            print(f"health {service!r}: {last}")
            sys.exit(0)
    except grpc.RpcError as e:
        last = f"{e.code().name}: {e.details()}"
    if time.monotonic() > deadline:
        print(f"health {service!r} not SERVING after {wait:.0f}s: {last}", file=sys.stderr)
        sys.exit(1)
    time.sleep(0.2)
EOF

# 1. Serving: readiness ("" entry) within 60 s, while the process is still up.
started=$(date +%s)
until "$PYTHON" "$work/health.py" "$grpc_addr" "" 1 >/dev/null 2>&1; do
  kill -0 "$run_pid" 2>/dev/null || fail "the image's default command exited"
  [ $(($(date +%s) - started)) -lt 60 ] || { "$PYTHON" "$work/health.py" "$grpc_addr" "" 0 || true; fail "not SERVING within 60 s"; }
done
"$PYTHON" "$work/health.py" "$grpc_addr" "" 0

# 2. Who serves: the process under buildah run that listens is uid 10001.
find_server
[ -n "$server_pid" ] || fail "no agent-registry process running as uid 10001 under buildah run"
log "server pid $server_pid: $(tr '\0' ' ' <"/proc/$server_pid/cmdline")," \
  "$(grep '^Uid:' "/proc/$server_pid/status" | tr -s '[:space:]' ' ')," \
  "cwd $(readlink "/proc/$server_pid/cwd")"
# The liveness probe's entry (what deploy/kubernetes probes for liveness and start-up).
"$PYTHON" "$work/health.py" "$grpc_addr" agentregistry.v1.Liveness 5 \
  || fail "health entry agentregistry.v1.Liveness not SERVING"
log "health agentregistry.v1.Liveness SERVING"

# 3. Register (with heartbeats) and Discover (with a Watch snapshot) through it.
id=$("$PYTHON" "$root/examples/python/agent.py" --server "$grpc_addr" --namespace image-check --beats 3 --keep)
"$PYTHON" "$root/examples/python/discoverer.py" --server "$grpc_addr" --namespace image-check --expect "$id"
log "registered and discovered $id"

# 4. Metrics on the second port.
"$PYTHON" - "$metrics_url" <<'EOF'
import sys, urllib.request
text = urllib.request.urlopen(sys.argv[1], timeout=5).read().decode()
lines = [l for l in text.splitlines() if l.startswith("agent_registry_registrations_total")]
if not lines or float(lines[0].split()[-1]) < 1:
    sys.exit(f"metrics: no registration counted in {lines}")
print(f"metrics: {lines[0]}")
EOF

# 4b. The HTTP API and the console on the third port.
"$PYTHON" - "$id" <<'EOF'
import json, sys, urllib.request
base = "http://127.0.0.1:8080"
page = json.load(urllib.request.urlopen(f"{base}/v1/namespaces/image-check/instances?view=all", timeout=5))
ids = [i["instanceId"] for i in page.get("instances", [])]
if sys.argv[1] not in ids:
    sys.exit(f"HTTP API: {sys.argv[1]} not in {ids}")
console = urllib.request.urlopen(f"{base}/", timeout=5).read().decode()
if "agent-registry console" not in console:
    sys.exit("HTTP API: no console at /")
print(f"HTTP API: lists {sys.argv[1]}; console served")
EOF

# 5. SIGTERM: the graceful shutdown ends with exit status 0.
kill -TERM "$server_pid"
rc=0
wait "$run_pid" || rc=$?
run_pid=
server_pid=
[ "$rc" = 0 ] || fail "exit status $rc after SIGTERM"
log "stopped by SIGTERM, exit status 0"

# 6. The database is in the data directory (the image's VOLUME), owned by the image's user.
bah run --isolation chroot "$ctr" -- ls -ln "$data_dir"
bah run --isolation chroot "$ctr" -- sh -c \
  "test \"\$(pwd)\" = $data_dir && test -s $data_dir/agent-registry.db && test \"\$(stat -c %u $data_dir/agent-registry.db)\" = 10001" \
  || fail "no non-empty $data_dir/agent-registry.db owned by 10001 (or the working directory is not $data_dir)"
log "$data_dir/agent-registry.db present, owned by 10001"

# 7. Nothing else written: outside the data directory (a volume, kept apart from the container's
# root filesystem), nothing in the root filesystem is newer than the start, so the image runs
# with readOnlyRootFilesystem. /run and the files buildah itself manages are left out.
mnt=$(bah mount "$ctr")
find "$mnt" -xdev -newer "$work/started" | sed "s|^$mnt||" \
  | grep -vxE '/run|/etc/(hosts|resolv\.conf|hostname)|/dev(/.*)?|/proc|/sys' >"$work/written.txt" || true
bah umount "$ctr" >/dev/null
[ ! -s "$work/written.txt" ] || { cat "$work/written.txt" >&2; fail "the server wrote outside $data_dir"; }
log "nothing written outside $data_dir"

# 8. The other subcommands through the entrypoint.
for sub in sidecar ctl; do
  bah run --isolation chroot "$ctr" -- "${entrypoint[@]}" "$sub" --help >"$work/$sub-help.txt" 2>&1 \
    || { cat "$work/$sub-help.txt" >&2; fail "$sub --help"; }
  grep -q '^Usage:' "$work/$sub-help.txt" || { cat "$work/$sub-help.txt" >&2; fail "$sub --help printed no usage"; }
  log "${entrypoint[*]} $sub --help: $(grep -m1 '^Usage:' "$work/$sub-help.txt")"
done

log "ok: $image"
