#!/usr/bin/env bash
# A rank that stops responding without dying (SIGSTOP: a stalled host) ends the job once the
# watchdog's timeout passes on the other rank (executor/mpi/watchdog.hpp; train.collective_timeout
# = 5 s here), with an error naming the rank, its host and the collective it waited in, and
# status.json "failed". Without the watchdog the job would wait forever.
source "$(dirname "$0")/mpi_fixture.bash"
mpi_setup "$1"
out="$work/stalled"
mpiexec -n 2 "$train" "${model[@]}" "${data[@]}" --steps 100000 --checkpoint-every 5 \
  --set train.collective_timeout=5 --mesh data:2 --layout batch:data --out "$out" >"$work/stalled.txt" 2>&1 &
job=$!  # mpiexec; the ranks are its children (ctest's TIMEOUT bounds a hang)
for _ in $(seq 1 300); do
  [ -s "$out/checkpoint.safetensors" ] && break
  sleep 0.1
done
[ -s "$out/checkpoint.safetensors" ] || { cat "$work/stalled.txt" >&2; fail "no checkpoint after 30 s"; }
victim=$(pgrep -P "$job" -f "$train" | tail -n 1)
[ -n "$victim" ] || fail "no rank process under mpiexec $job"
start=$(date +%s.%N)
kill -STOP "$victim"
rc=0
wait "$job" || rc=$?
seconds=$(echo "$(date +%s.%N) - $start" | bc)
echo "  rank stopped: job ended with exit code $rc after ${seconds}s"
[ "$rc" -ne 0 ] || { cat "$work/stalled.txt" >&2; fail "exit code $rc"; }
(( $(echo "$seconds < 30" | bc) )) || fail "the job took ${seconds}s to end (timeout 5 s)"
grep -qE "rank 0 of 2 on host .*has not completed after [0-9]+ s \(watchdog: train.collective_timeout = 5 s\)" \
  "$work/stalled.txt" || { cat "$work/stalled.txt" >&2; fail "no watchdog error naming the rank and the collective"; }
grep -q '"status": "failed"' "$out/status.json" || { cat "$out/status.json" >&2; fail "status.json does not say failed"; }
echo "ok"
