#!/usr/bin/env bash
# Side-by-side benchmark of durable webhook accepts against a no-op axum handler, plus
# webhook-to-delivered throughput. Prints medians over ROUNDS rounds; see BENCHMARKS.md.
#
#   bench/run.sh                 # ROUNDS=3 DURATION=10s CONNS=64
#   BASE_BIN=/path/to/older/hookflow bench/run.sh   # also measures that build, interleaved in
#                                                   # the same rounds (rows "base-…")
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
SECRET=bench-secret-0123456789abcdef
P_NOOP=19100 P_HOOK=19200 P_SINK=19300 P_PEER=19350

if ! command -v wrk >/dev/null || ! command -v webhook >/dev/null; then
  apt-get update -qq && apt-get install -y -qq wrk webhook
fi
# TARGET=dir: binaries built already (hookflow and examples/noop_server), e.g. another
# CARGO_TARGET_DIR's release/; otherwise they are built here.
. bench/lib.sh
targets noop_server
BIN=$TARGET/hookflow
NOOP=$TARGET/examples/noop_server
workdir

sed "s/SINK/127.0.0.1:$P_SINK/" bench/orders.yaml > "$work/flows/bench.yaml"

cat > "$work/peer-hooks.json" <<JSON
[{"id": "bench", "execute-command": "/bin/true", "http-methods": ["POST"], "response-message": "accepted"}]
JSON

wait_port() { for _ in $(seq 200); do curl -s -o /dev/null "http://127.0.0.1:$1/" && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; exit 1; }
stop() { kill -TERM "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }
# The webhook's path (the URL without its scheme and host).
hook_path=$("$BIN" urls --flows "$work/flows" --templates "$work/none" --data "$work/x" --secret "$SECRET" | awk '{print $2}' | sed -E 's#^https?://[^/]+##')

# wrk → "reqs_per_sec p50_ms p99_ms accepted"
measure() {
  local out; out=$(BENCH_PAYLOAD=bench/order.json wrk -t2 -c"$CONNS" -d"$DURATION" --latency -s bench/post.lua "$1")
  python3 - "$out" <<'PY'
import re, sys
out = sys.argv[1]
def ms(v):
    n, unit = re.match(r"([\d.]+)(us|ms|s)", v).groups()
    return float(n) * {"us": 0.001, "ms": 1, "s": 1000}[unit]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
p50 = ms(re.search(r"\s50%\s+(\S+)", out).group(1))
p99 = ms(re.search(r"\s99%\s+(\S+)", out).group(1))
total = int(re.search(r"(\d+) requests in", out).group(1))
bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
errs = re.search(r"Socket errors: .*", out)
print(f"{rps:.0f} {p50:.2f} {p99:.2f} {total - (int(bad.group(1)) if bad else 0)}")
if errs: print(errs.group(0), file=sys.stderr)
PY
}

results="$work/results.txt"
for round in $(seq "$ROUNDS"); do
  # 1. The ceiling: a no-op axum handler that reads the body and answers 202.
  "$NOOP" "127.0.0.1:$P_NOOP" & p=$!; pids+=("$p"); wait_port $P_NOOP
  echo "noop $(measure "http://127.0.0.1:$P_NOOP$hook_path")" | tee -a "$results"
  stop $p

  # A peer: adnanh/webhook (Debian's `webhook`), its hook running /bin/true for each request.
  webhook -hooks "$work/peer-hooks.json" -ip 127.0.0.1 -port $P_PEER -nopanic >/dev/null 2>&1 & p=$!; pids+=("$p")
  for _ in $(seq 200); do curl -s -o /dev/null "http://127.0.0.1:$P_PEER/hooks/bench" && break; sleep 0.05; done
  echo "peer-webhook $(measure "http://127.0.0.1:$P_PEER/hooks/bench")" | tee -a "$results"
  stop $p

  for variant in current ${BASE_BIN:+base}; do
    bin=$BIN; label=""
    if [ "$variant" = base ]; then bin=$BASE_BIN; label="base-"; fi
    # 2./3. Durable accepts only (runs stored and flushed, not executed), flush and fsync.
    for durability in flush fsync; do
      [ "$variant" = base ] && [ "$durability" = fsync ] && continue
      rm -rf "$work/data"
      HOOKFLOW_LOG=warn "$bin" serve --flows "$work/flows" --templates "$work/none" --data "$work/data" \
        --secret "$SECRET" --listen "127.0.0.1:$P_HOOK" --workers 0 --durability $durability & p=$!; pids+=("$p"); wait_port $P_HOOK
      echo "${label}accept-$durability $(measure "http://127.0.0.1:$P_HOOK$hook_path")" | tee -a "$results"
      stop $p
    done

    # 4. End to end: accepts while the engine delivers to a sink; time until the last delivery.
    rm -rf "$work/data"
    "$NOOP" "127.0.0.1:$P_SINK" & sink=$!; pids+=("$sink"); wait_port $P_SINK
    HOOKFLOW_LOG=warn "$bin" serve --flows "$work/flows" --templates "$work/none" --data "$work/data" \
      --secret "$SECRET" --listen "127.0.0.1:$P_HOOK" --workers 32 --egress-allow 127.0.0.1 & p=$!; pids+=("$p"); wait_port $P_HOOK
    start=$(date +%s.%N)
    read -r rps p50 p99 accepted < <(measure "http://127.0.0.1:$P_HOOK$hook_path")
    for _ in $(seq 2400); do
      delivered=$(curl -s "http://127.0.0.1:$P_SINK/count")
      [ "$delivered" -ge "$accepted" ] && break
      sleep 0.05
    done
    end=$(date +%s.%N)
    e2e=$(python3 -c "print(f'{$delivered / ($end - $start):.0f}')")
    echo "${label}full $rps $p50 $p99 $accepted delivered=$delivered e2e_per_sec=$e2e" | tee -a "$results"
    stop $p; stop $sink
  done
done

python3 - "$results" "$ROUNDS" "$CONNS" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
def med(kind, col):
    return statistics.median(float(r[col]) for r in rows if r[0] == kind)
noop = med("noop", 1)
print(f"\nmedians over {sys.argv[2]} rounds, {sys.argv[3]} connections, 1 KB JSON body\n")
def ratio(kind):
    # Each server against the no-op measured in the same round, then the median of those.
    ceil = [float(r[1]) for r in rows if r[0] == "noop"]
    mine = [float(r[1]) for r in rows if r[0] == kind]
    return statistics.median(m / c for m, c in zip(mine, ceil))
print("| server | requests/s | p50 ms | p99 ms | vs no-op (same round) |")
print("|---|---:|---:|---:|---:|")
kinds = [("noop", "no-op axum handler (202)"), ("peer-webhook", "adnanh/webhook 2.8.0, hook runs /bin/true"), ("accept-flush", "hookflow durable accept (flush)"),
         ("accept-fsync", "hookflow durable accept (fsync)"), ("full", "hookflow accept while delivering"),
         ("base-accept-flush", "base build: durable accept (flush)"), ("base-full", "base build: accept while delivering")]
for kind, label in kinds:
    if any(r[0] == kind for r in rows):
        print(f"| {label} | {med(kind,1):.0f} | {med(kind,2):.2f} | {med(kind,3):.2f} | {ratio(kind):.0%} |")
if any(r[0] == "peer-webhook" for r in rows):
    peer = [float(r[1]) for r in rows if r[0] == "peer-webhook"]
    for kind in ("accept-flush", "full"):
        mine = [float(r[1]) for r in rows if r[0] == kind]
        print(f"\nhookflow {kind} against adnanh/webhook in the same round: {statistics.median(m / w for m, w in zip(mine, peer)):.1f}x")
for kind, label in [("full", "this build"), ("base-full", "base build")]:
    if any(r[0] == kind for r in rows):
        e2e = statistics.median(float(r[6].split("=")[1]) for r in rows if r[0] == kind)
        print(f"\nwebhook-to-delivered throughput, {label} (accept + execute + deliver, until the last delivery): {e2e:.0f} runs/s")
PY
