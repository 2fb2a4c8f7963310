#!/usr/bin/env bash
# An illegal layout exits 2 on every rank before any work (no output directory is created),
# naming the rule broken: a dim mapped twice, a size the axis does not divide, an unknown axis,
# two dims of one tensor on one axis, a dim no tensor has; a mesh whose device count is not the
# number of ranks; several ranks without --mesh.
source "$(dirname "$0")/mpi_fixture.bash"
bin=$1
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
train="$bin/train"
# No corpus is needed: the layout is refused before the data is read.
data=(--data "$work/no-corpus" --vocab 160 --threads 1)
model=(--model "$root/experiments/configs/models/tiny.toml" --set train.batch=4)

refused() {  # refused N MESH LAYOUT TEXT...: exit 2, the message printed, nothing written
  local n=$1 mesh=$2 layout=$3
  shift 3
  mpi_train "$n" "${model[@]}" "${data[@]}" --steps 2 --mesh "$mesh" --layout "$layout" --out "$work/out"
  [ "$rc" -eq 2 ] || { cat "$work/log.txt" >&2; fail "--mesh $mesh --layout $layout: exit code $rc, expected 2"; }
  for text in "$@"; do
    grep -qF -- "$text" "$work/log.txt" || { cat "$work/log.txt" >&2; fail "--layout $layout: expected '$text'"; }
  done
  [ ! -e "$work/out" ] || fail "--layout $layout: the output directory was created"
}

refused 2 data:2,model:2 batch:data,batch:model "dim 'batch' is mapped twice" "a tensor dim maps to at most one mesh axis"
refused 3 data:3 batch:data "dim 'batch' has size 4, which mesh axis 'data' of size 3 does not divide" \
  "a split dim must divide evenly"
refused 2 data:2 batch:model "names mesh axis 'model', which mesh 'data:2' does not have"
refused 2 data:2 batch:data,d_model:data "dims 'batch' and 'd_model' both map to mesh axis 'data'" \
  "a mesh axis splits at most one dim of a tensor"
refused 2 data:2 nodim:data "names dim 'nodim', which no tensor of the graph has"
# Every rank refuses alike, and the message appears once (rank 0's: the other ranks are ended by
# mpiexec before they print, experiments/tool/tool_main.cpp).
[ "$(grep -c "names dim 'nodim'" "$work/log.txt")" -eq 1 ] || { cat "$work/log.txt" >&2; fail "the refusal is not printed once"; }

# The mesh must have one device per rank (checked when MPI starts; the job ends with exit 2).
mpi_train 3 "${model[@]}" "${data[@]}" --steps 2 --mesh data:2 --layout batch:data --out "$work/out"
[ "$rc" -eq 2 ] || { cat "$work/log.txt" >&2; fail "3 ranks on data:2: exit code $rc, expected 2"; }
grep -qF "mesh data:2 has 2 devices but the job has 3 MPI ranks" "$work/log.txt" || { cat "$work/log.txt" >&2; fail "no rank count message"; }

# Several ranks without --mesh would each train alone into the same directory: refused.
mpi_train 2 "${model[@]}" "${data[@]}" --steps 2 --out "$work/out"
[ "$rc" -eq 2 ] || { cat "$work/log.txt" >&2; fail "2 ranks without --mesh: exit code $rc, expected 2"; }
grep -qF "started on 2 MPI ranks without --mesh" "$work/log.txt" || { cat "$work/log.txt" >&2; fail "no --mesh message"; }
[ ! -e "$work/out" ] || fail "2 ranks without --mesh: the output directory was created"
echo "ok"
