#!/usr/bin/env bash
# A receiver outage, replayed: N webhooks accepted with the workers off (nothing delivered),
# a restart with all of them queued, then the workers on and the backlog drained into a sink.
# Prints the server's RSS over time (sampled every second, to backlog-rss.csv in the work dir
# and summarised here), the store's size on disk, cold start and drain rate. See BENCHMARKS.md.
#
#   bench/backlog.sh                            # N=1000000, the 1.25 KB order of bench/order.json
#   N=200000 SERVE_ARGS="--store-cache 8MiB" bench/backlog.sh
#   KEEP=1 bench/backlog.sh                     # keep the work dir (its path is printed)
#   BIN=/path/to/other/hookflow bench/backlog.sh   # another build (the examples come from this tree)
#   TARGET=/other/target/release bench/backlog.sh  # binaries built already
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-1000000}
C=${C:-64}
P_HOOK=19600 P_SINK=19700
SECRET=bench-secret-0123456789abcdef
# TARGET=dir: binaries built already (hookflow, examples/noop_server and examples/load);
# BIN=path: another hookflow build with this tree's examples.
. bench/lib.sh
targets noop_server load
BIN=${BIN:-$TARGET/hookflow}
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]:-}"; do kill -9 "$p" 2>/dev/null || true; done
  if [ -z "${KEEP:-}" ]; then rm -rf "$work"; else echo "work dir kept: $work"; fi
}
trap cleanup EXIT
mkdir -p "$work/flows"
sed "s/SINK/127.0.0.1:$P_SINK/" bench/orders.yaml > "$work/flows/orders.yaml"
sed 's/"id": 727,/"id": {i},/' bench/order.json > "$work/body.json"
grep -q '{i}' "$work/body.json" || { echo "bench/order.json changed: no id to number" >&2; exit 1; }

rss() { awk '/VmRSS/ {printf "%.0f", $2/1024}' "/proc/$1/status" 2>/dev/null || echo 0; }
mib() { du -sm "$1" | cut -f1; }
now() { date +%s.%N; }
secs() { python3 -c "print(f'{$2 - $1:.1f}')"; }
metric() { curl -s "http://127.0.0.1:$P_HOOK/metrics" | awk -v m="$1" '$0 ~ m {print $2}' | head -1; }
serve() { # serve WORKERS
  HOOKFLOW_LOG=warn "$BIN" serve --flows "$work/flows" --templates "$work/none" --data "$work/data" \
    --secret "$SECRET" --listen "127.0.0.1:$P_HOOK" --egress-allow 127.0.0.1 --workers "$1" \
    --max-runs 100000000 ${SERVE_ARGS:-} >>"$work/server.log" 2>&1 & p=$!; pids+=("$p")
  for _ in $(seq 1200); do curl -s -o /dev/null "http://127.0.0.1:$P_HOOK/readyz" && return 0; sleep 0.05; done
  echo "hookflow did not start (see $work/server.log)" >&2; tail -5 "$work/server.log" >&2; exit 1
}
stop() { kill -TERM "$1"; wait "$1" 2>/dev/null || true; }
csv="$work/backlog-rss.csv"
echo "phase,seconds,rss_mib" > "$csv"
sample() { # sample PHASE PID T0 — appends one CSV row, prints the RSS
  local r; r=$(rss "$2"); echo "$1,$(secs "$3" "$(now)"),$r" >> "$csv"; echo "$r"
}
peak_of() { awk -F, -v ph="$1" '$1 == ph && $3 > m {m = $3} END {print m + 0}' "$csv"; }

"$TARGET/examples/noop_server" "127.0.0.1:$P_SINK" & pids+=("$!")
serve 0; server=$p
echo "idle, empty store: $(rss $server) MiB"
url="http://127.0.0.1:$P_HOOK$("$BIN" urls --flows "$work/flows" --templates "$work/none" --data "$work/data" --secret "$SECRET" | awk '{print $2}' | sed -E 's#^https?://[^/]+##')"

# 1. Accept N with the workers off, sampling RSS while it runs.
t0=$(now)
"$TARGET/examples/load" "$url" "$N" "$C" "$work/body.json" > "$work/load.txt" & loader=$!
while kill -0 $loader 2>/dev/null; do sample accept $server "$t0" >/dev/null; sleep 1; done
wait $loader
echo "accepted: $(cat "$work/load.txt"); RSS peak $(peak_of accept) MiB, at the end $(rss $server) MiB"
stop $server
echo "store with $N queued: $(mib "$work/data") MiB on disk"

# 2. Restart with everything queued, workers still off.
t0=$(now); serve 0; server=$p; up=$(now)
sleep 2
echo "restart with $N queued: ready in $(secs "$t0" "$up") s, RSS $(rss $server) MiB after 2 s"
stop $server

# 3. Workers on: drain the backlog into the sink.
t0=$(now); serve 32; server=$p
while :; do
  sample drain $server "$t0" >/dev/null
  d=$(curl -s "http://127.0.0.1:$P_SINK/count")
  [ "$d" -ge "$N" ] && break
  sleep 1
done
t1=$(now)
echo "drained $N in $(secs "$t0" "$t1") s ($(python3 -c "print(f'{$N / ($t1 - $t0):.0f}')") runs/s); RSS peak $(peak_of drain) MiB"
for _ in $(seq 300); do [ "$(metric 'hookflow_queue_depth[{ ]')" = "0" ] && break; sleep 0.2; done
sleep 2
echo "after the drain: RSS $(rss $server) MiB"
stop $server
disk=$(du -sb "$work/data/store" | cut -f1)
echo "store with $N finished runs: $(mib "$work/data") MiB on disk, $((disk / N)) bytes per run"
t0=$(now); serve 0; server=$p; up=$(now); sleep 2
echo "restart with $N finished runs: ready in $(secs "$t0" "$up") s, RSS $(rss $server) MiB"
stop $server
echo "RSS samples: $csv"
awk -F, 'NR > 1 && (NR % 10 == 2) {printf "  %s %6.1f s %5d MiB\n", $1, $2, $3}' "$csv"
