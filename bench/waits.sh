#!/usr/bin/env bash
# Waiting runs cost no memory: N runs parked at a one-day `wait`, the server's RSS before and
# after, a restart with them all waiting (start time, RSS), then the clock moved a day ahead
# (HOOKFLOW_TEST_CLOCK_OFFSET_FILE) and the time until every run has woken and delivered.
#
#   bench/waits.sh                              # N=100000 sent at once, 64 connections
#   CHUNK=5000 N=300000 bench/waits.sh          # in chunks, each waiting before the next is sent
#   CHUNK=5000 SERVE_ARGS="--park-after 1000d" bench/waits.sh   # the same, nothing parked
#
# Sent at once, the runs arrive several times faster than they are executed up to their wait,
# so the store holds them all at some point, and sled 0.34 keeps memory for the most it ever
# held; in chunks, what the waiting itself costs shows.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-100000}
P_HOOK=19400 P_SINK=19500
SECRET=bench-secret-0123456789abcdef
cargo build --release --quiet --bin hookflow   # apart from the examples: see bench/run.sh
cargo build --release --quiet --example noop_server --example load
BIN=target/release/hookflow
. bench/lib.sh
workdir
cat > "$work/flows/sequence.yaml" <<YAML
on: { webhook: {} }
vars: { email: \$.email }
actions:
  - wait: 1d
  - http: { url: "http://127.0.0.1:$P_SINK/later" }
YAML
echo 0 > "$work/offset"
rss() { awk '/VmRSS/ {printf "%.0f", $2/1024}' "/proc/$1/status"; }
metric() { curl -s "http://127.0.0.1:$P_HOOK/metrics" | awk -v m="$1" '/^#/ {next} $0 ~ m {print $2}' | head -1; }
serve() {
  HOOKFLOW_LOG=warn HOOKFLOW_TEST_CLOCK_OFFSET_FILE="$work/offset" "$BIN" serve --flows "$work/flows" \
    --templates "$work/none" --data "$work/data" --secret "$SECRET" --listen "127.0.0.1:$P_HOOK" \
    --egress-allow 127.0.0.1 --poll 200ms ${SERVE_ARGS:-} & p=$!; pids+=("$p")
  for _ in $(seq 600); do curl -s -o /dev/null "http://127.0.0.1:$P_HOOK/readyz" && return 0; sleep 0.05; done
  echo "hookflow did not start" >&2; exit 1
}
target/release/examples/noop_server "127.0.0.1:$P_SINK" & pids+=("$!")
serve; server=$p
echo "idle, empty store: $(rss $server) MiB"
url="http://127.0.0.1:$P_HOOK$("$BIN" urls --flows "$work/flows" --templates "$work/none" --data "$work/x" --secret "$SECRET" | awk '{print $2}' | sed -E 's#^https?://[^/]+##')"
if [ -n "${CHUNK:-}" ]; then
  sent=0
  while [ "$sent" -lt "$N" ]; do
    target/release/examples/load "$url" "$CHUNK" 16 > /dev/null; sent=$((sent + CHUNK))
    for _ in $(seq 1200); do [ "$(metric 'hookflow_runs_waiting[{]')" = "$sent" ] && break; sleep 0.1; done
  done
  echo "sent $N in chunks of $CHUNK, each waiting before the next"
else
  target/release/examples/load "$url" "$N" 64
fi
for _ in $(seq 1200); do [ "$(metric 'hookflow_runs_waiting[{]')" = "$N" ] && break; sleep 0.1; done
echo "$(metric 'hookflow_runs_waiting[{]') runs waiting ($(metric 'hookflow_runs_parked') parked): $(rss $server) MiB"
sleep 10; echo "the same, 10 s later: $(rss $server) MiB"
kill -TERM $server; wait $server 2>/dev/null || true
start=$(date +%s.%N); serve; server=$p; up=$(date +%s.%N)
echo "restart with $N waiting: ready in $(python3 -c "print(f'{$up - $start:.2f}')") s at $(rss $server) MiB"
echo $((25 * 3600 * 1000)) > "$work/offset"
t0=$(date +%s.%N); peak=0
while :; do
  d=$(curl -s "http://127.0.0.1:$P_SINK/count"); r=$(rss $server); [ "$r" -gt "$peak" ] && peak=$r
  [ "$d" -ge "$N" ] && break; sleep 0.2
done
t1=$(date +%s.%N)
echo "woke and delivered $N in $(python3 -c "print(f'{$t1 - $t0:.1f} s ({$N / ($t1 - $t0):.0f} runs/s)')"), peak RSS $peak MiB"
# The same store once every run has finished: what a restart costs is the store's size, not
# how many of its runs wait.
kill -TERM $server; wait $server 2>/dev/null || true
serve; server=$p
echo "restart with $N finished runs: $(rss $server) MiB; store $(du -sm "$work/data/store/db" | cut -f1) MB on disk"
