#!/usr/bin/env bash
# How soon an idle instance picks up a run another instance accepted (PostgreSQL): instance A
# accepts with no workers, instance B executes and polls only every 30 s, so B learns of each
# run from the database's notification (LISTEN/NOTIFY). N webhooks are sent one at a time, GAP
# apart (B idle in between); the pickup is each run's first attempt start minus its accept time,
# both as the store recorded them. Prints the median, p99 and max. See BENCHMARKS.md.
#
#   bench/pickup.sh                        # N=300 GAP=0.05, PostgreSQL at PG (below)
#   TARGET=/other/target/release bench/pickup.sh
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-300}
GAP=${GAP:-0.05}
PG=${PG:-postgres://postgres@127.0.0.1:5432/test}
SECRET=bench-secret-0123456789abcdef
P_A=19500 P_B=19501 P_SINK=19502
command -v psql >/dev/null || { echo "psql is needed (apt-get install postgresql-client)" >&2; exit 1; }
. bench/lib.sh
targets noop_server
BIN=$TARGET/hookflow
work=$(mktemp -d)
schema="hfp_$(date +%s%N)"
pids=()
cleanup() {
  for p in "${pids[@]:-}"; do kill -9 "$p" 2>/dev/null || true; done
  psql -q "$PG" -c "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
psql -q "$PG" -c "CREATE SCHEMA $schema" >/dev/null
store="$PG?options=-c%20search_path%3D$schema"
mkdir -p "$work/flows"
sed "s/SINK/127.0.0.1:$P_SINK/" bench/orders.yaml > "$work/flows/bench.yaml"
wait_port() { for _ in $(seq 400); do curl -s -o /dev/null "http://127.0.0.1:$1/" && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; exit 1; }

"$TARGET/examples/noop_server" "127.0.0.1:$P_SINK" & pids+=($!)
for i in a b; do
  port=$P_A workers=0; [ $i = b ] && port=$P_B workers=8
  HOOKFLOW_LOG=warn "$BIN" serve --flows "$work/flows" --templates "$work/none" --data "$work/data-$i" \
    --secret "$SECRET" --listen "127.0.0.1:$port" --workers $workers --poll 30s --egress-allow 127.0.0.1 \
    --store "$store" 2>>"$work/log" & pids+=($!)
done
wait_port $P_A; wait_port $P_B; wait_port $P_SINK
sleep 1
path=$("$BIN" urls --flows "$work/flows" --templates "$work/none" --data "$work/x" --secret "$SECRET" | awk '{print $2}' | sed -E 's#^https?://[^/]+##')
python3 - "http://127.0.0.1:$P_A$path" "http://127.0.0.1:$P_B" "$N" "$GAP" <<'PY'
import json, sys, time, urllib.request
from datetime import datetime
hook, api, n, gap = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
body = open("bench/order.json", "rb").read()
def ms(s): return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp() * 1000
def get(url): return json.load(urllib.request.urlopen(url, timeout=10))
ids = []
for _ in range(n):
    req = urllib.request.Request(hook, data=body, headers={"content-type": "application/json"})
    ids.append(json.load(urllib.request.urlopen(req, timeout=10))["run_id"])
    time.sleep(gap)
picks = []
for i in ids:
    for _ in range(500):
        run = get(f"{api}/api/runs/{i}")
        attempts = run["steps"][0]["attempts"]
        if attempts:
            picks.append(ms(attempts[0]["started_at"]) - ms(run["created_at"]))
            break
        time.sleep(0.02)
    else:
        sys.exit(f"run {i} was never attempted")
picks.sort()
q = lambda p: picks[min(len(picks) - 1, int(p * len(picks)))]
print(f"pickup by the idle instance, {len(picks)} runs: median {q(0.5):.0f} ms, p99 {q(0.99):.0f} ms, max {picks[-1]:.0f} ms")
PY
