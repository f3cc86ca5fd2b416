#!/usr/bin/env bash
# The reliability drills of RELIABILITY.md, in their long forms, against the real binary on
# loopback; each is bounded in time (the whole set takes about three minutes on 2 cores after
# the build). The test suite runs the same drills in short forms.
#
#   drills/run.sh              # all of them; KILLS=20 kill -9 rounds
#   KILLS=50 drills/run.sh kill_9     # one drill by name, longer
#   PARTITION_S=120 drills/run.sh partition   # the silent partition, two minutes long
#
# The disk-full drill (a tmpfs) and the partition drill (a network namespace, veth, tc) run
# only as root (skipped otherwise, and said so); the clock drills need libfaketime.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT_TESTS=""
if [ "$(id -u)" -eq 0 ]; then ROOT_TESTS=required; fi
drills=(
  drills::
  crash::
  contain::one_bad_byte_in_the_journal_costs_one_run
  contain::a_damaged_store_settings_file_is_named
  contain::one_hanging_partner_does_not_delay
  contain::a_huge_answer_costs_a_bounded_read
  holes::a_full_disk_refuses_or_restarts
  clock::
  partition::
  edge::slow_clients_are_cut_off
  sequences::kill_9_while_waiting
  cluster::three_instances_share_the_load
)
filters=()
for d in "${drills[@]}"; do filters+=("$d"); done
if [ $# -gt 0 ]; then filters=("$@"); fi
HOOKFLOW_DRILL_KILLS="${KILLS:-20}" HOOKFLOW_DRILL_PARTITION_S="${PARTITION_S:-60}" HOOKFLOW_ROOT_TESTS=$ROOT_TESTS \
  cargo test --test it -- --nocapture --test-threads 2 "${filters[@]}" 2>&1 \
  | grep -E --line-buffered '^test |drill:|^test result|panicked|FAILED|skipped' 
