#!/usr/bin/env bash
# Instructions per heartbeat, counted by callgrind: repeatable for the same binary and inputs
# whatever else the machine is doing, unlike seconds. The registry (SQLite, so no database
# process shares the work) and the echo server each run under valgrind while the generator
# sends a fixed number of beats; a run with one beat per agent is the baseline subtracted, so
# start-up, registration and stream set-up cancel out.
#
#   bench/profile.sh                 # JSON lines on stdout; callgrind files in $OUT
#   callgrind_annotate $OUT/registry-100.out | head -60   # where the instructions go
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/results/profile-$(date -u +%Y%m%dT%H%M%SZ)}
AGENTS=${AGENTS:-100}
BEATS=${BEATS:-100}
PORT=${BENCH_PORT_BASE:-31900}
BIN=target/release
REGISTRY=${BENCH_REGISTRY_BIN:-$BIN/agent-registry}   # another build to profile (before/after)
mkdir -p "$OUT"
cargo build --release --quiet --bin agent-registry
cargo build --release --quiet -p agent-registry-bench
TMP=$(mktemp -d)
PID=""
trap '[ -n "$PID" ] && kill "$PID" 2>/dev/null; rm -rf "$TMP"' EXIT

wait_port() {
  for _ in $(seq 1 1200); do (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done
  echo "nothing listening on $1" >&2; return 1
}

# instructions VAR TARGET BEATS: assigns to VAR the target's total instruction count for a run
# of BEATS per agent (no subshell, so the exit trap sees the valgrind it started).
instructions() {
  local var=$1 target=$2 beats=$3 file=$OUT/$2-$3.out
  PORT=$((PORT + 2))
  local cmd
  case $target in
    registry) cmd=("$REGISTRY" --listen "127.0.0.1:$PORT" --metrics-listen "127.0.0.1:$((PORT + 1))" --http-listen ""
                   --database-url "sqlite://$TMP/$beats.db") ;;
    echo) cmd=("$BIN/bench-peer" --kind echo --listen "127.0.0.1:$PORT") ;;
  esac
  valgrind --tool=callgrind --callgrind-out-file="$file" "${cmd[@]}" >"$OUT/$target-$beats.log" 2>&1 &
  PID=$!
  wait_port "$PORT"
  sleep 2
  "$BIN/loadgen" heartbeat --target "$target" --addr "127.0.0.1:$PORT" --agents "$AGENTS" \
    --per-connection 100 --interval 0s --beats "$beats" --warmup 0s --duration 600s >/dev/null 2>>"$OUT/loadgen.log"
  kill -TERM "$PID"; wait "$PID" || true
  PID=""
  # The file's "summary:" line is the total of the first event (instructions).
  printf -v "$var" %s "$(grep -m1 '^summary:' "$file" | awk '{print $2}')"
}

for t in registry echo; do
  instructions base $t 1
  instructions full $t "$BEATS"
  per=$(( (full - base) / (AGENTS * (BEATS - 1)) ))
  echo "{\"scenario\":\"instructions\",\"target\":\"$t\",\"agents\":$AGENTS,\"beats_per_agent\":$BEATS,\"instructions_baseline\":$base,\"instructions_total\":$full,\"instructions_per_beat\":$per}"
done
