#!/usr/bin/env bash
# Runs the benchmark scenarios: starts each target (the registry on SQLite or Postgres, the
# echo / pg-update / redis-set comparison servers, etcd), drives it with bench's load generator
# and appends one JSON line per run to $OUT/results.jsonl. BENCHMARKS.md reads from those.
#
#   bench/run.sh --quick            # every scenario, small: under 2 minutes
#   bench/run.sh --smoke            # a few seconds: CI's check that the tooling works
#   bench/run.sh compare scale memory register discover fanout startup expiry search   # the full set
#   bench/run.sh --out DIR compare  # results somewhere else (default bench/results/DATE)
#
# Needs: Postgres (BENCH_DATABASE_URL, an admin URL; each run gets a fresh database), Redis
# (BENCH_REDIS_URL) and, for the etcd comparison, etcd on PATH (Debian: etcd-server).
set -euo pipefail
cd "$(dirname "$0")/.."

PG_ADMIN=${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
REDIS=${BENCH_REDIS_URL:-redis://127.0.0.1:6379}
# Below the ephemeral range (32768+), which thousands of client connections fill.
PORT=${BENCH_PORT_BASE:-31000}
BIN=target/release
# Another build of the server to measure (e.g. the previous commit's, for a before/after).
REGISTRY=${BENCH_REGISTRY_BIN:-$BIN/agent-registry}
OUT=""
SIZE=full
SCENARIOS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) SIZE=quick ;;
    --smoke) SIZE=smoke ;;
    --out) OUT=$2; shift ;;
    *) SCENARIOS+=("$1") ;;
  esac
  shift
done
if [ ${#SCENARIOS[@]} = 0 ]; then
  case $SIZE in
    smoke) SCENARIOS=(compare register) ;;
    *) SCENARIOS=(compare scale memory register discover fanout startup expiry search) ;;
  esac
fi
OUT=${OUT:-bench/results/$(date -u +%Y%m%dT%H%M%SZ)-$SIZE}
mkdir -p "$OUT"
RESULTS=$OUT/results.jsonl
# 18 000 agents on their own connections need as many descriptors on each side.
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"

cargo build --release --quiet --bin agent-registry
cargo build --release --quiet -p agent-registry-bench

PIDS=()
DBS=()
TMP=$(mktemp -d)
cleanup() {
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for d in "${DBS[@]:-}"; do [ -n "$d" ] && psql "$PG_ADMIN" -qc "DROP DATABASE IF EXISTS $d" 2>/dev/null || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT

# fresh_db VAR: creates an empty database and assigns its URL to VAR (no subshell, so the
# cleanup list keeps it).
fresh_db() {
  local name=bench_$(date +%s%N)_$RANDOM
  psql "$PG_ADMIN" -qc "CREATE DATABASE $name" >/dev/null
  DBS+=("$name")
  printf -v "$1" %s "${PG_ADMIN%/*}/$name"
}

# port VAR: assigns the next free-by-convention port to VAR (no subshell, so the count sticks).
port() { PORT=$((PORT + 1)); printf -v "$1" %s "$PORT"; }

# start LOG CMD… — starts a target in the background; sets TARGET_PID.
start() {
  local log=$OUT/$1.log; shift
  "$@" >"$log" 2>&1 &
  TARGET_PID=$!
  PIDS+=("$TARGET_PID")
}

# stop: stops the last target and forgets it, so the cleanup never signals a reused pid.
stop() {
  kill "$TARGET_PID" 2>/dev/null || true
  wait "$TARGET_PID" 2>/dev/null || true
  local keep=() p
  for p in "${PIDS[@]}"; do [ "$p" = "$TARGET_PID" ] || keep+=("$p"); done
  PIDS=("${keep[@]}")
}

wait_port() { # wait_port PORT: until something listens there
  for _ in $(seq 1 400); do
    (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "nothing listening on $1" >&2; return 1
}

# start_target NAME [registry flags…] — starts NAME; sets ADDR, TARGET_PID and METRICS.
start_target() {
  local name=$1; shift
  local port; port port
  ADDR=127.0.0.1:$port
  METRICS=()
  case $name in
    registry-sqlite|registry-postgres)
      local db mport; port mport
      if [ "$name" = registry-sqlite ]; then db="sqlite://$TMP/registry-$port.db"; else fresh_db db; fi
      TARGET_DB=$db
      start "$name-$port" "$REGISTRY" --listen "$ADDR" --metrics-listen "127.0.0.1:$mport" --http-listen "" \
        --database-url "$db" "$@"
      METRICS=(--metrics "127.0.0.1:$mport") ;;
    echo|redis-set)
      start "$name-$port" "$BIN/bench-peer" --kind "$name" --listen "$ADDR" --redis-url "$REDIS" ;;
    pg-update)
      local db; fresh_db db
      start "$name-$port" "$BIN/bench-peer" --kind pg-update --listen "$ADDR" --database-url "$db" ;;
    etcd)
      local peer; port peer
      start "etcd-$port" etcd --data-dir "$TMP/etcd-$port" --name bench \
        --listen-client-urls "http://$ADDR" --advertise-client-urls "http://$ADDR" \
        --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
        --initial-cluster "bench=http://127.0.0.1:$peer" ;;
    *) echo "unknown target $name" >&2; exit 2 ;;
  esac
  wait_port "$port"
  # The registry binds before it has opened its store; give it a moment to hydrate.
  sleep 0.5
}

# heartbeat TARGET LABEL loadgen-args… — a fresh target per run, so its memory is this run's.
heartbeat() {
  local target=$1 label=$2; shift 2
  start_target "$target"
  local proto=$target
  case $target in registry-*) proto=registry ;; esac
  echo "== heartbeat $label $*" >&2
  "$BIN/loadgen" --label "$label" heartbeat --target "$proto" --addr "$ADDR" --pid "$TARGET_PID" \
    "${METRICS[@]}" "$@" >>"$RESULTS"
  stop
}

case $SIZE in
  smoke) AGENTS=50; PACE=20ms; WARM=1s; RUN=1s; TARGETS=(registry-sqlite echo) ;;
  quick) AGENTS=1000; PACE=100ms; WARM=1s; RUN=2s; TARGETS=(registry-postgres echo etcd pg-update redis-set) ;;
  full) AGENTS=1000; PACE=100ms; WARM=5s; RUN=10s; TARGETS=(registry-postgres registry-sqlite echo etcd pg-update redis-set) ;;
esac
[ -n "${BENCH_TARGETS:-}" ] && read -ra TARGETS <<<"$BENCH_TARGETS"   # e.g. "echo etcd"
command -v etcd >/dev/null || { echo "etcd not found: skipping the etcd comparison (Debian: etcd-server)" >&2; TARGETS=("${TARGETS[@]/etcd}"); }

scenario_compare() {
  # The same agents, the same rate, every target: each agent on its own connection, paced;
  # then 100 agents per connection as fast as acknowledged (the most each target does).
  for t in "${TARGETS[@]}"; do
    [ -n "$t" ] || continue
    heartbeat "$t" "$t" --agents "$AGENTS" --interval "$PACE" --warmup "$WARM" --duration "$RUN" --source-addrs 4
    [ $SIZE = quick ] && continue   # the closed-loop maximum only in the full set
    heartbeat "$t" "$t" --agents "$AGENTS" --per-connection 100 --interval 0s --warmup "$WARM" --duration "$RUN"
  done
}

scenario_scale() {
  # 100 000 beats/s offered at every size: the interval grows with the number of agents.
  local sizes=(1000 10000 50000 100000)
  [ $SIZE = quick ] && sizes=(1000 10000)
  for t in ${SCALE_TARGETS:-registry-postgres echo}; do
    for n in "${sizes[@]}"; do
      local ms=$((n / 100))
      heartbeat "$t" "$t" --agents "$n" --per-connection 100 --interval "${ms}ms" --warmup "$WARM" --duration "$RUN"
      tail -n1 "$RESULTS" >>"$OUT/scale.jsonl"
    done
  done
}

scenario_memory() {
  # Idle agents (one beat per 5 s): 18 000 on their own connections (the file limit is 20 000
  # per process), and 100 000 streams over 1 000 connections.
  local own=18000 mux=100000 targets="registry-postgres echo"
  [ $SIZE = quick ] && { own=2000; mux=10000; targets=registry-postgres; }
  for t in $targets; do
    heartbeat "$t" "$t-own-connections" --agents $own --interval 5s --warmup "$WARM" --duration "$RUN" --source-addrs 8
    heartbeat "$t" "$t-multiplexed" --agents $mux --per-connection 100 --interval 5s --warmup "$WARM" --duration "$RUN"
  done
}

scenario_register() {
  local n=20000 paced=10000
  [ $SIZE = quick ] && { n=3000; paced=3000; }
  [ $SIZE = smoke ] && { n=200; paced=100; }
  local t=registry-postgres; [ $SIZE = smoke ] && t=registry-sqlite
  start_target $t
  echo "== register $t" >&2
  "$BIN/loadgen" --label "$t-throughput" register --addr "$ADDR" --count $n --concurrency 256 >>"$RESULTS"
  "$BIN/loadgen" --label "$t-1000/s" register --addr "$ADDR" --count $paced --rate 1000 >>"$RESULTS"
  stop
  [ $t = registry-postgres ] && pgbench_insert "$TARGET_DB"
  return 0
}

# pgbench_insert DB: the hand-rolled equivalent of a registration, in the same run and on the
# registry's own schema — one durable single-row INSERT per transaction into registry_instance
# (its indexes and change-log trigger included) — as many clients as this Postgres allows.
pgbench_insert() {
  local db=$1 secs=10 clients=64
  [ $SIZE = quick ] && secs=3
  local pgbench; pgbench=$(command -v pgbench || ls /usr/lib/postgresql/*/bin/pgbench 2>/dev/null | tail -n1)
  [ -n "$pgbench" ] || { echo "pgbench not found; skipping the pgbench comparison" >&2; return 0; }
  psql "$db" -qc "INSERT INTO namespace VALUES ('pgbench', '00000000-0000-0000-0000-000000000001', now(), now(), 0)
                  ON CONFLICT DO NOTHING;
                  CREATE SEQUENCE IF NOT EXISTS pgbench_revision START 1000000000" >/dev/null
  cat >"$TMP/insert.sql" <<'SQL'
INSERT INTO registry_instance (instance_id, namespace, logical_id, epoch, status, lease_ttl, started_at, last_heartbeat, revision)
VALUES (gen_random_uuid(), 'pgbench', 'agent', '00000000-0000-0000-0000-000000000001', 'ALIVE', interval '15 seconds', now(), now(), nextval('pgbench_revision'));
SQL
  echo "== pgbench single-row INSERT, $clients clients, ${secs}s" >&2
  local tps
  tps=$("$pgbench" -n -c $clients -j 2 -T $secs -f "$TMP/insert.sql" "$db" 2>/dev/null     | sed -n 's/^tps = \([0-9.]*\).*/\1/p' | head -n1)
  echo "{\"label\":\"pgbench-insert\",\"scenario\":\"register\",\"clients\":$clients,\"seconds\":$secs,\"tps\":${tps:-0}}" >>"$RESULTS"
}

scenario_discover() {
  local n=100000 calls=5000; [ $SIZE = quick ] && { n=10000; calls=1000; }
  start_target registry-postgres
  echo "== discover $n" >&2
  "$BIN/loadgen" --label registry-postgres discover --addr "$ADDR" --instances $n --calls $calls \
    --pid "$TARGET_PID" >>"$RESULTS"
  stop
}

scenario_fanout() {
  local writes=1000; [ $SIZE = quick ] && writes=100
  local db; fresh_db db
  local pa pb ma mb; port pa; port pb; port ma; port mb
  local prefix="bench-$RANDOM:"
  start fanout-a "$REGISTRY" --listen "127.0.0.1:$pa" --metrics-listen "127.0.0.1:$ma" --http-listen "" \
    --database-url "$db" --redis-url "$REDIS" --redis-prefix "$prefix"
  local a=$TARGET_PID
  start fanout-b "$REGISTRY" --listen "127.0.0.1:$pb" --metrics-listen "127.0.0.1:$mb" --http-listen "" \
    --database-url "$db" --redis-url "$REDIS" --redis-prefix "$prefix"
  wait_port "$pa"; wait_port "$pb"; sleep 1
  echo "== fanout" >&2
  "$BIN/loadgen" --label registry-postgres-redis fanout --a "127.0.0.1:$pa" --b "127.0.0.1:$pb" --writes $writes >>"$RESULTS"
  stop; TARGET_PID=$a; stop
}

scenario_startup() {
  local n=100000; [ $SIZE = quick ] && n=10000
  local db; fresh_db db
  echo "== startup $n" >&2
  "$BIN/loadgen" --label registry-postgres startup --server-bin "$REGISTRY" \
    --database-url "$db" --instances $n >>"$RESULTS"
  # The same with a ~2 KiB card per agent, search included.
  fresh_db db
  echo "== startup $n with cards" >&2
  "$BIN/loadgen" --label registry-postgres-cards startup --server-bin "$REGISTRY" \
    --database-url "$db" --instances $n --cards >>"$RESULTS"
}

scenario_search() {
  # Register without a card, with new cards, by digest; memory per card; SearchAgents over
  # gRPC and HTTP; Postgres full-text search over the same cards, in the same run.
  local n=100000 calls=5000
  [ $SIZE = quick ] && { n=10000; calls=1000; }
  [ $SIZE = smoke ] && { n=300; calls=50; }
  local db gp hp mp; fresh_db db; port gp; port hp; port mp
  start search "$REGISTRY" --listen "127.0.0.1:$gp" --metrics-listen "127.0.0.1:$mp" \
    --http-listen "127.0.0.1:$hp" --database-url "$db"
  wait_port "$gp"; wait_port "$hp"; sleep 0.5
  echo "== search $n agents" >&2
  "$BIN/loadgen" --label registry-postgres search --addr "127.0.0.1:$gp" --http "127.0.0.1:$hp" \
    --database-url "$db" --agents $n --calls $calls --pid "$TARGET_PID" >>"$RESULTS"
  stop
}

scenario_expiry() {
  local n=100000 e=40000; [ $SIZE = quick ] && n=10000 e=4000
  local db base; fresh_db db; fresh_db base
  echo "== expiry $e of $n" >&2
  "$BIN/loadgen" --label registry-postgres expiry --database-url "$db" --baseline-url "$base" \
    --instances $n --expired $e >>"$RESULTS"
}

for s in "${SCENARIOS[@]}"; do "scenario_$s"; done
# The chart is of the scale runs (every other run would be a point at its own size).
chart_from=$OUT/scale.jsonl
[ -s "$chart_from" ] || chart_from=$RESULTS
# Only when heartbeats were measured (`search startup` alone has nothing to chart).
if grep -q '"scenario":"heartbeat"' "$chart_from" 2>/dev/null; then
  "$BIN/bench-chart" "$chart_from" --out "$OUT/heartbeat-scale.svg"
fi
echo "results: $RESULTS" >&2
