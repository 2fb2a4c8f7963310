#!/usr/bin/env bash
# "Same program" on MPI meshes (tests/executor/test_same_program.cpp, hidden tags [mpi2], [mpi4]):
# tiny and small on data:2 (batch), data:2 (batch + experts), model:2 (d_ff, heads) with 2 ranks
# and data:2,model:2 with 4: every rank's executed ops equal the simulator's priced ops.
source "$(dirname "$0")/mpi_fixture.bash"
bin=$1
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for case in "2 [mpi2]" "4 [mpi4]"; do
  read -r n tag <<<"$case"
  rc=0
  timeout 240 mpiexec -n "$n" --oversubscribe "$bin/sy_tests" "$tag" --use-colour no >"$out" 2>&1 || rc=$?
  [ "$rc" -eq 0 ] || { cat "$out" >&2; fail "sy_tests $tag on $n ranks: exit code $rc"; }
  [ "$(grep -c "All tests passed" "$out")" -eq "$n" ] || { cat "$out" >&2; fail "$tag: not every rank passed"; }
  grep -q "in 1 test case)" "$out" || { cat "$out" >&2; fail "$tag: expected 1 test case per rank"; }
  echo "$tag on $n ranks: $(grep -m1 "All tests passed" "$out")"
done
echo "ok"
