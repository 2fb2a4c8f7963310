#!/usr/bin/env bash
# The executor's MPI pieces on 4 ranks (the hidden Catch2 tests tagged [mpi] in
# tests/executor/test_mpi.cpp): every collective kind over one axis, two axes in mesh order and
# reversed, f32/bf16/i32, sum/mean/max, against ops/collective.cpp's definition; blocks of global
# tensors; lowered MoE layers with gradients on four meshes against the single-process run; a
# dropless MoE layer whose all_to_alls move routed rows only (executor/mpi/ragged_all_to_all.hpp).
source "$(dirname "$0")/mpi_fixture.bash"
bin=$1
out=$(mktemp)
trap 'rm -f "$out"' EXIT
rc=0
timeout 240 mpiexec -n 4 --oversubscribe "$bin/sy_tests" "[mpi]" --use-colour no >"$out" 2>&1 || rc=$?
[ "$rc" -eq 0 ] || { cat "$out" >&2; fail "sy_tests [mpi] on 4 ranks: exit code $rc"; }
# Each rank ran the four test cases.
[ "$(grep -c "All tests passed" "$out")" -eq 4 ] || { cat "$out" >&2; fail "not every rank passed"; }
grep -q "in 4 test cases)" "$out" || { cat "$out" >&2; fail "expected 4 test cases per rank"; }
echo "ok"
