#!/usr/bin/env bash
# A network link cut between two hosts ends the job within 60 s with a named error, status.json
# says how the run ended, and the run resumes from its last checkpoint to the same result as an
# uninterrupted run. The hosts are two network namespaces on a bridge (scripts/netns_hosts.sh;
# ranks talk TCP through the kernel); the cut takes host 2's link down. Neither rank dies: without
# the watchdog (executor/mpi/watchdog.hpp) both would wait in their collective for minutes.
# Skipped (exit 77) where network namespaces cannot be created (not root, no CAP_SYS_ADMIN).
source "$(dirname "$0")/mpi_fixture.bash"
netns="$(cd "$(dirname "$0")/../.." && pwd)/scripts/netns_hosts.sh"
"$netns" check || { echo "skipped: network namespaces are not available here"; exit 77; }
mpi_setup "$1"
trap '"$netns" down; rm -rf "$work"' EXIT
"$netns" up >/dev/null
read -ra hosts_opts <<<"$("$netns" mpi-options)"
out="$work/cut"
timeout 240 mpiexec -n 2 --host 10.77.0.1,10.77.0.2 "${hosts_opts[@]}" "$train" "${model[@]}" "${data[@]}" \
  --steps 200 --checkpoint-every 5 --set train.collective_timeout=10 --mesh data:2 --layout batch:data \
  --out "$out" >"$work/cut.txt" 2>&1 &
job=$!
for _ in $(seq 1 600); do
  [ -s "$out/checkpoint.safetensors" ] && break
  sleep 0.1
done
[ -s "$out/checkpoint.safetensors" ] || { cat "$work/cut.txt" >&2; fail "no checkpoint after 60 s on the two hosts"; }
start=$(date +%s.%N)
ip link set sy-h2-v down
rc=0
wait "$job" || rc=$?
seconds=$(echo "$(date +%s.%N) - $start" | bc)
echo "  link cut: job ended with exit code $rc after ${seconds}s"
[ "$rc" -ne 0 ] || fail "the job exited 0 after its link was cut"
[ "$rc" -ne 124 ] || { cat "$work/cut.txt" >&2; fail "the job hung after the link was cut (timeout)"; }
(( $(echo "$seconds < 60" | bc) )) || fail "the job took ${seconds}s to end (limit 60 s)"
/usr/bin/python3 - "$out/status.json" <<'PY' || { cat "$work/cut.txt" >&2; fail "status.json does not say how the run ended"; }
import json, re, sys
s = json.load(open(sys.argv[1]))
assert s["status"] == "failed", s
assert re.search(r"rank \d of 2 on host \S+ .*(all_reduce|all_gather|reduce_scatter|all_to_all|agreement|barrier)", s["reason"]), s
print(f"  status.json: failed at step {s['step']}: {s['reason'][:110]}...")
PY
"$netns" down
mpi_train 2 "${data[@]}" --resume "$out" --steps 200 --mesh data:2 --layout batch:data --out "$out"
expect_ok "resume after the cut"
mpi_train 2 "${model[@]}" "${data[@]}" --steps 200 --mesh data:2 --layout batch:data --out "$work/uninterrupted"
expect_ok "the uninterrupted 200-step run"
same_run "$work/uninterrupted" "$out" 200 || fail "the resumed run differs from the uninterrupted one"
echo "ok"
