#!/usr/bin/env bash
# sled against PostgreSQL, and one against two against three instances on one PostgreSQL, side
# by side in each round against a no-op axum handler. Prints medians over ROUNDS rounds; see
# BENCHMARKS.md ("Several instances on PostgreSQL").
#
#   bench/cluster.sh        # ROUNDS=3 DURATION=10s CONNS=64, PostgreSQL at PG (below)
#   TARGET=/other/target/release bench/cluster.sh   # binaries built already (another build)
#
# Every PostgreSQL measurement gets a fresh schema (dropped afterwards). Load on N instances is
# N wrk processes, CONNS/N connections each, one per instance; their requests/s are summed.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
PG=${PG:-postgres://postgres@127.0.0.1:5432/test}
SECRET=bench-secret-0123456789abcdef
P_NOOP=19100 P_HOOK=19200 P_SINK=19300

if ! command -v wrk >/dev/null; then
  apt-get update -qq && apt-get install -y -qq wrk
fi
command -v psql >/dev/null || { echo "psql is needed (apt-get install postgresql-client)" >&2; exit 1; }
# TARGET=dir: binaries built already (hookflow and examples/noop_server), e.g. another build's.
. bench/lib.sh
targets noop_server
BIN=$TARGET/hookflow
NOOP=$TARGET/examples/noop_server
workdir

sed "s/SINK/127.0.0.1:$P_SINK/" bench/orders.yaml > "$work/flows/bench.yaml"

wait_port() { for _ in $(seq 400); do curl -s -o /dev/null "http://127.0.0.1:$1/" && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; exit 1; }
stop() { kill -TERM "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }
hook_path=$("$BIN" urls --flows "$work/flows" --templates "$work/none" --data "$work/x" --secret "$SECRET" | awk '{print $2}' | sed -E 's#^https?://[^/]+##')

# wrk on each of the given ports at once → "reqs_per_sec(sum) p50_ms(max) p99_ms(max) accepted(sum)"
measure() {
  local n=$# i=0 outs=()
  for port in "$@"; do
    BENCH_PAYLOAD=bench/order.json wrk -t1 -c$((CONNS / n)) -d"$DURATION" --latency -s bench/post.lua \
      "http://127.0.0.1:$port$hook_path" > "$work/wrk.$i" &
    outs+=("$work/wrk.$i"); i=$((i + 1))
  done
  wait
  python3 - "${outs[@]}" <<'PY'
import re, sys
def ms(v):
    n, unit = re.match(r"([\d.]+)(us|ms|s)", v).groups()
    return float(n) * {"us": 0.001, "ms": 1, "s": 1000}[unit]
rps = p50 = p99 = 0; ok = 0
for f in sys.argv[1:]:
    out = open(f).read()
    rps += float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = max(p50, ms(re.search(r"\s50%\s+(\S+)", out).group(1)))
    p99 = max(p99, ms(re.search(r"\s99%\s+(\S+)", out).group(1)))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    ok += total - (int(bad.group(1)) if bad else 0)
print(f"{rps:.0f} {p50:.2f} {p99:.2f} {ok}")
PY
}

schema=""
new_schema() {
  schema="hfb_$(date +%s%N)"
  psql -q "$PG" -c "CREATE SCHEMA $schema" >/dev/null
  echo "$PG?options=-c%20search_path%3D$schema"
}
drop_schema() { psql -q "$PG" -c "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null 2>&1 || true; }

# serve LABEL N WORKERS STORE(sled|url): N instances on ports P_HOOK.., measured together;
# with workers, also the time until the sink has every accepted run.
serve() {
  local label=$1 n=$2 workers=$3 store=$4 ports=() ipids=() sink=""
  rm -rf "$work"/data*
  if [ "$workers" -gt 0 ]; then
    "$NOOP" "127.0.0.1:$P_SINK" & sink=$!; pids+=("$sink"); wait_port $P_SINK
  fi
  for i in $(seq 0 $((n - 1))); do
    local port=$((P_HOOK + i)) args=()
    [ "$store" != sled ] && args=(--store "$store")
    HOOKFLOW_LOG=warn "$BIN" serve --flows "$work/flows" --templates "$work/none" --data "$work/data$i" \
      --secret "$SECRET" --listen "127.0.0.1:$port" --workers "$workers" --egress-allow 127.0.0.1 "${args[@]}" &
    ipids+=($!); pids+=($!); ports+=("$port")
  done
  for port in "${ports[@]}"; do wait_port "$port"; done
  local start end rps p50 p99 accepted delivered=0 e2e=""
  start=$(date +%s.%N)
  read -r rps p50 p99 accepted < <(measure "${ports[@]}")
  if [ -n "$sink" ]; then
    for _ in $(seq 6000); do
      delivered=$(curl -s "http://127.0.0.1:$P_SINK/count")
      [ "$delivered" -ge "$accepted" ] && break
      sleep 0.05
    done
    end=$(date +%s.%N)
    e2e="e2e_per_sec=$(python3 -c "print(f'{$delivered / ($end - $start):.0f}')")"
  fi
  echo "$label $rps $p50 $p99 $accepted $e2e" | tee -a "$results"
  for p in "${ipids[@]}"; do stop "$p"; done
  [ -n "$sink" ] && stop "$sink"
  return 0
}

results="$work/results.txt"
for round in $(seq "$ROUNDS"); do
  "$NOOP" "127.0.0.1:$P_NOOP" & p=$!; pids+=("$p"); wait_port $P_NOOP
  read -r rps p50 p99 accepted < <(measure $P_NOOP)
  echo "noop $rps $p50 $p99 $accepted" | tee -a "$results"
  stop $p
  serve sled-accept 1 0 sled
  url=$(new_schema); serve pg-accept 1 0 "$url"; drop_schema
  serve sled-full 1 32 sled
  for n in 1 2 3; do
    url=$(new_schema); serve "pg-full-$n" "$n" 32 "$url"; drop_schema
  done
done

python3 - "$results" "$ROUNDS" "$CONNS" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
def med(kind, col):
    return statistics.median(float(r[col]) for r in rows if r[0] == kind)
def ratio(kind, base="noop"):
    ceil = [float(r[1]) for r in rows if r[0] == base]
    mine = [float(r[1]) for r in rows if r[0] == kind]
    return statistics.median(m / c for m, c in zip(mine, ceil))
def e2e(kind):
    v = [float(r[5].split("=")[1]) for r in rows if r[0] == kind and len(r) > 5]
    return statistics.median(v) if v else None
print(f"\nmedians over {sys.argv[2]} rounds, {sys.argv[3]} connections in all, 1 KB JSON body\n")
print("| server | accepts/s | p50 ms | p99 ms | vs no-op | end-to-end runs/s |")
print("|---|---:|---:|---:|---:|---:|")
kinds = [("noop", "no-op axum handler (202)"), ("sled-accept", "sled, accept only"),
         ("pg-accept", "PostgreSQL, accept only"), ("sled-full", "sled, accept while delivering"),
         ("pg-full-1", "PostgreSQL, 1 instance, delivering"), ("pg-full-2", "PostgreSQL, 2 instances, delivering"),
         ("pg-full-3", "PostgreSQL, 3 instances, delivering")]
for kind, label in kinds:
    if any(r[0] == kind for r in rows):
        e = e2e(kind)
        print(f"| {label} | {med(kind,1):.0f} | {med(kind,2):.2f} | {med(kind,3):.2f} | {ratio(kind):.0%} | {'' if e is None else f'{e:.0f}'} |")
print()
for n in (2, 3):
    if any(r[0] == f"pg-full-{n}" for r in rows):
        print(f"{n} instances vs 1 (same round): accepts {ratio(f'pg-full-{n}', 'pg-full-1'):.2f}x")
print(f"PostgreSQL vs sled, accept only (same round): {ratio('pg-accept', 'sled-accept'):.2f}x")
print("\nrounds:")
for r in rows:
    print("  " + " ".join(r))
PY
