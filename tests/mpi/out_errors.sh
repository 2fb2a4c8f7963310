#!/usr/bin/env bash
# A bad --out under mpiexec (issue #16): an existing file, a path under a file, a path that cannot
# be created, a directory that already holds a run. Only rank 0 writes, so only rank 0 can check
# --out; it tells every rank (executor/mpi/mpi_run.hpp AgreedInputError), and the job ends with
# exit 2 on every rank (no MPI_Abort, no signal), one message from rank 0 alone, within the
# timeout (no hang), nothing written.
source "$(dirname "$0")/mpi_fixture.bash"
command -v mpiexec >/dev/null || { echo "SKIP: mpiexec is not installed"; exit 77; }
mpi_setup "$1"
echo "precious" >"$work/file"
mkdir "$work/held"
cp "$work/single/checkpoint.safetensors" "$work/held/"

for out in "$work/file" "$work/file/sub" /proc/self/no_such_dir "$work/held"; do
  before=$(find "$work" -path "$work/log.txt" -prune -o -printf '%P %s %T@\n' | sort)
  start=$(date +%s)
  mpi_train 2 "${model[@]}" "${data[@]}" --steps 2 --mesh data:2 --layout batch:data --out "$out"
  seconds=$(( $(date +%s) - start ))
  [ "$rc" -eq 2 ] || { cat "$work/log.txt" >&2; fail "--out $out: exit code $rc, expected 2"; }
  # One line from the tool, naming --out and the path; no rank aborted the job.
  n=$(grep -c "^train: " "$work/log.txt" || true)
  [ "$n" -eq 1 ] || { cat "$work/log.txt" >&2; fail "--out $out: $n messages from train, expected 1 (rank 0's)"; }
  grep -qF -- "--out $out" "$work/log.txt" || { cat "$work/log.txt" >&2; fail "--out $out: the message does not name it"; }
  if grep -qE "MPI_ABORT|ending the job|internal error|signal" "$work/log.txt"; then
    cat "$work/log.txt" >&2
    fail "--out $out: the job was aborted or crashed instead of ending with exit 2 on every rank"
  fi
  [ "$before" = "$(find "$work" -path "$work/log.txt" -prune -o -printf '%P %s %T@\n' | sort)" ] ||
    fail "--out $out: files changed"
  echo "  --out $out: exit 2 on every rank in ${seconds}s, one message: $(grep '^train: ' "$work/log.txt" | cut -c1-120)"
done
[ "$(cat "$work/file")" = "precious" ] || fail "the file named by --out was overwritten"

# Input every rank reads alike (a config value, a layout) is refused by every rank at once: the
# message is printed once (rank 0's; the others are ended by mpiexec within the grace period of
# experiments/tool/tool_main.cpp before they print), exit 2.
refused_once() {  # WANT ARGS...: mpiexec -n 2 train ARGS exits 2 with one message saying WANT
  local want=$1; shift
  mpi_train 2 "${model[@]}" "${data[@]}" --steps 2 --mesh data:2 "$@" --out "$work/never"
  [ "$rc" -eq 2 ] || { cat "$work/log.txt" >&2; fail "$*: exit code $rc, expected 2"; }
  n=$(grep -c "^train: " "$work/log.txt" || true)
  [ "$n" -eq 1 ] || { cat "$work/log.txt" >&2; fail "$*: $n messages from train, expected 1"; }
  grep -qF -- "$want" "$work/log.txt" || { cat "$work/log.txt" >&2; fail "$*: the message does not say '$want'"; }
  [ ! -e "$work/never" ] || fail "$*: --out was created"
  echo "  $*: exit 2, one message: $(grep '^train: ' "$work/log.txt" | cut -c1-120)"
}
refused_once "moe.k = 9" --layout batch:data --set moe.k=9
refused_once "names dim 'nodim'" --layout nodim:data
echo "ok"
