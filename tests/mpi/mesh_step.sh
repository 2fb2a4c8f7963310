#!/usr/bin/env bash
# One step on a mesh equals one step on one process (tests/executor/test_mesh_step.cpp, hidden
# tags [mesh_step2], [mesh_step4]): every layout of layouts_2_ranks.sh on 2 ranks and of
# layouts_4_ranks.sh on 4, Adafactor and AdamW, every parameter and optimizer slot within 1e-6
# relative (Adafactor's statistics are reduced over the axes that split the tensor).
source "$(dirname "$0")/mpi_fixture.bash"
bin=$1
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for case in "2 [mesh_step2]" "4 [mesh_step4]"; do
  read -r n tag <<<"$case"
  rc=0
  timeout 240 mpiexec -n "$n" --oversubscribe "$bin/sy_tests" "$tag" --use-colour no >"$out" 2>&1 || rc=$?
  [ "$rc" -eq 0 ] || { cat "$out" >&2; fail "sy_tests $tag on $n ranks: exit code $rc"; }
  [ "$(grep -c "All tests passed" "$out")" -eq "$n" ] || { cat "$out" >&2; fail "$tag: not every rank passed"; }
  grep -E "^  (adafactor|adamw) " "$out" || true
done
echo "ok"
