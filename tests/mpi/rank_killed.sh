#!/usr/bin/env bash
# A rank killed with SIGKILL mid-run ends the whole job within 60 s with a non-zero exit code and
# an error naming the lost rank (Open MPI's mpiexec detects it and ends the other ranks); the run
# then resumes from its last periodic checkpoint and ends as an uninterrupted run of the same
# length does. The run is long (200 steps) so the kill lands mid-way however fast the steps are.
source "$(dirname "$0")/mpi_fixture.bash"
mpi_setup "$1"
# No rank writes temporary files outside the run's directory (executor/mpi/mpi_run.hpp): a killed
# job leaves nothing behind in /tmp. (Before, each rank > 0 wrote /tmp/switchyard-rank<r>-<pid>.)
scratch_before=$(ls -d "${TMPDIR:-/tmp}"/switchyard-rank* 2>/dev/null | sort || true)
out="$work/killed"
mpiexec -n 2 "$train" "${model[@]}" "${data[@]}" --steps 200 --checkpoint-every 5 --mesh data:2 \
  --layout batch:data --out "$out" >"$work/killed.txt" 2>&1 &
job=$!  # mpiexec; the ranks are its children (ctest's TIMEOUT bounds a hang)
# Wait for training to be under way (a periodic checkpoint written).
for _ in $(seq 1 300); do
  [ -s "$out/checkpoint.safetensors" ] && break
  sleep 0.1
done
[ -s "$out/checkpoint.safetensors" ] || { cat "$work/killed.txt" >&2; fail "no checkpoint after 30 s"; }
victim=$(pgrep -P "$job" -f "$train" | tail -n 1)
[ -n "$victim" ] || fail "no rank process under mpiexec $job"
rank=$(tr '\0' '\n' <"/proc/$victim/environ" | sed -n 's/^OMPI_COMM_WORLD_RANK=//p')
start=$(date +%s.%N)
kill -9 "$victim"
rc=0
wait "$job" || rc=$?
seconds=$(echo "$(date +%s.%N) - $start" | bc)
[ "$rc" -ne 0 ] || fail "the job exited 0 after rank $rank was killed"
echo "  rank $rank killed: job ended with exit code $rc after ${seconds}s"
(( $(echo "$seconds < 60" | bc) )) || fail "the job took ${seconds}s to end (limit 60 s)"
grep -qE "rank $rank .*(exited on signal 9|Killed)" "$work/killed.txt" \
  || { cat "$work/killed.txt" >&2; fail "no error naming rank $rank"; }
# The writer (rank 0) outlived rank 1 long enough to record how the run ended: it was waiting in
# a collective when mpiexec's SIGTERM came (executor/mpi/watchdog.hpp). A killed writer cannot.
if [ "$rank" = 1 ]; then
  grep -q '"status": "failed"' "$out/status.json" || { cat "$out/status.json" >&2; fail "status.json does not say failed"; }
fi

scratch_after=$(ls -d "${TMPDIR:-/tmp}"/switchyard-rank* 2>/dev/null | sort || true)
new_scratch=$(comm -13 <(echo "$scratch_before") <(echo "$scratch_after"))
[ -z "$new_scratch" ] || fail "the killed job left per-rank scratch directories: $new_scratch"

# Resume from the last periodic checkpoint (a multiple of 5 steps) on the same mesh.
mpi_train 2 "${data[@]}" --resume "$out" --steps 200 --mesh data:2 --layout batch:data --out "$out"
expect_ok "resume after the lost rank"
# The reference: the same 200 steps on the same mesh without interruption (the mesh's sums run in
# another order than one process's, so it, not the single-process run, is what a resume must equal).
mpi_train 2 "${model[@]}" "${data[@]}" --steps 200 --mesh data:2 --layout batch:data --out "$work/uninterrupted"
expect_ok "the uninterrupted 200-step run"
same_run "$work/uninterrupted" "$out" 200 || fail "the resumed run differs from the uninterrupted one"
scratch_after=$(ls -d "${TMPDIR:-/tmp}"/switchyard-rank* 2>/dev/null | sort || true)
[ "$scratch_before" = "$scratch_after" ] || fail "a run left per-rank scratch directories: $(comm -13 <(echo "$scratch_before") <(echo "$scratch_after"))"
echo "ok"
