#!/usr/bin/env bash
# What an accepted request costs hookflow's threads: context switches and CPU time per request,
# read from /proc around a wrk run against the accept-only server (no workers, flush
# durability), for this build and BASE_BIN interleaved in each round. Medians over ROUNDS.
# See BENCHMARKS.md, "The accept path's hand-offs".
#
#   bench/switches.sh                                   # ROUNDS=5 DURATION=8s CONNS=64
#   BASE_BIN=/path/to/older/hookflow bench/switches.sh
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-8s}
CONNS=${CONNS:-64}
DURABILITY=${DURABILITY:-flush}
SECRET=bench-secret-0123456789abcdef
P_HOOK=19400

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
. bench/lib.sh
targets
BIN=$TARGET/hookflow
workdir
sed "s/SINK/127.0.0.1:1/" bench/orders.yaml > "$work/flows/bench.yaml"
hook_path=$("$BIN" urls --flows "$work/flows" --templates "$work/none" --data "$work/x" --secret "$SECRET" | awk '{print $2}' | sed -E 's#^https?://[^/]+##')
wait_port() { for _ in $(seq 200); do curl -s -o /dev/null "http://127.0.0.1:$1/" && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; exit 1; }

# "switches cpu_ticks" of all of a process's threads, now.
sample() {
  local sw=0 t v n
  for t in /proc/"$1"/task/*; do
    while read -r n v; do
      case $n in voluntary_ctxt_switches:|nonvoluntary_ctxt_switches:) sw=$((sw + v)) ;; esac
    done < "$t/status"
  done
  # utime + stime of the whole process (fields 14 and 15), in clock ticks.
  echo "$sw $(awk '{print $14 + $15}' /proc/"$1"/stat)"
}

results="$work/results.txt"
hz=$(getconf CLK_TCK)
for round in $(seq "$ROUNDS"); do
  for variant in current ${BASE_BIN:+base}; do
    bin=$BIN; [ "$variant" = base ] && bin=$BASE_BIN
    rm -rf "$work/data"
    HOOKFLOW_LOG=warn "$bin" serve --flows "$work/flows" --templates "$work/none" --data "$work/data" \
      --secret "$SECRET" --listen "127.0.0.1:$P_HOOK" --workers 0 --durability "$DURABILITY" --egress-allow 127.0.0.1 & p=$!; pids+=("$p"); wait_port $P_HOOK
    read -r sw0 cpu0 < <(sample "$p")
    out=$(BENCH_PAYLOAD=bench/order.json wrk -t2 -c"$CONNS" -d"$DURATION" -s bench/post.lua "http://127.0.0.1:$P_HOOK$hook_path")
    read -r sw1 cpu1 < <(sample "$p")
    threads=$(ls /proc/"$p"/task | wc -l)
    kill -TERM "$p"; wait "$p" 2>/dev/null || true
    total=$(echo "$out" | awk '/requests in/ {print $1}')
    bad=$(echo "$out" | awk '/Non-2xx/ {print $NF}'); bad=${bad:-0}
    ok=$((total - bad))
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    python3 -c "print('$variant', f'{$rps:.0f}', f'{($sw1-$sw0)/$ok:.3f}', f'{($cpu1-$cpu0)/$hz/$ok*1e6:.1f}', $threads)" | tee -a "$results"
  done
done

python3 - "$results" "$ROUNDS" "$CONNS" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
print(f"\nmedians over {sys.argv[2]} rounds, {sys.argv[3]} connections, accept only\n")
print("| build | requests/s | context switches per request | CPU µs per request | threads |")
print("|---|---:|---:|---:|---:|")
for v in ("current", "base"):
    r = [x for x in rows if x[0] == v]
    if r:
        med = lambda i: statistics.median(float(x[i]) for x in r)
        print(f"| {v} | {med(1):.0f} | {med(2):.2f} | {med(3):.1f} | {med(4):.0f} |")
PY
