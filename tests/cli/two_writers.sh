#!/usr/bin/env bash
# Two writers on one output directory (issue #16), for every tool that writes one: train,
# simulate and run_ablation. The directory's lock (DIR/.lock, graph/output_dir.hpp) lets one
# writer in; the other exits 2 at once naming the holder (pid and tool) and writes nothing, and
# the holder's files stay whole and its own.
#   - train: a second train on the directory of a running train.
#   - run_ablation: a second sweep on the directory of a running sweep.
#   - simulate: the lock is held while its reports are written (the pricing runs before), so two
#     simulate runs started together either both succeed one after the other, or the later one is
#     refused; 6 pairs of different configs (--set moe.cf_train) are raced, and after each the
#     directory's four files all come from one run and are whole.
set -euo pipefail
bin=$1
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
expect_refused() {  # expect_refused HOLDER_PID HOLDER_TOOL TOOL ARGS...: exit 2, one line naming the holder
  local holder=$1 holder_tool=$2 tool=$3 rc=0
  shift 3
  "$bin/$tool" "$@" >"$work/out.txt" 2>"$work/err.txt" || rc=$?
  [ "$rc" -eq 2 ] || { cat "$work/out.txt" "$work/err.txt" >&2; fail "second $tool: exit code $rc, expected 2"; }
  [ "$(wc -l <"$work/err.txt")" -eq 1 ] || { cat "$work/err.txt" >&2; fail "second $tool: stderr is not one line"; }
  grep -qF "is in use by another process" "$work/err.txt" || { cat "$work/err.txt" >&2; fail "second $tool: no lock message"; }
  grep -qF "$holder $holder_tool" "$work/err.txt" || { cat "$work/err.txt" >&2; fail "second $tool: the holder is not named"; }
}
wait_for() {  # wait_for FILE LOG: until FILE is non-empty (30 s)
  for _ in $(seq 1 300); do [ -s "$1" ] && return 0; sleep 0.1; done
  cat "$2" >&2
  fail "$1 did not appear"
}

# shellcheck source=tests/cli/run_ablation_fixture.bash
source "$root/tests/cli/run_ablation_fixture.bash"
synth="$work/synth"
make_corpus "$synth"
tiny="$root/experiments/configs/models/tiny.toml"
common=(--data "$synth" --vocab "$SY_TEST_VOCAB" --threads 1)
model=(--model "$tiny" --set model.vocab="$SY_TEST_VOCAB" --set train.target_length=8)

# ---- train ----
"$bin/train" "${model[@]}" "${common[@]}" --steps 100000 --out "$work/busy" >"$work/busy.out" 2>&1 &
pid=$!
pids+=("$pid")
wait_for "$work/busy/metrics.jsonl" "$work/busy.out"
expect_refused "$pid" train train "${model[@]}" "${common[@]}" --steps 3 --out "$work/busy"
[ ! -f "$work/busy/checkpoint.safetensors" ] || fail "the refused second train wrote a checkpoint"
kill -TERM "$pid"
wait "$pid" || true
# The holder ended on SIGTERM as it does alone: checkpoint and status "interrupted", metrics whole.
grep -qF '"interrupted"' "$work/busy/status.json" || fail "the first train's status.json: $(cat "$work/busy/status.json")"
/usr/bin/python3 -c "
import json, sys
steps = [json.loads(l)['step'] for l in open(sys.argv[1])]
assert steps == list(range(1, len(steps) + 1)), steps
" "$work/busy/metrics.jsonl" || fail "the first train's metrics.jsonl was mixed with another writer's"
echo "  train: the second writer refused; the first run's files are whole"

# ---- run_ablation ----
write_spec "$work/sweep.toml" 200
"$bin/run_ablation" "$work/sweep.toml" --data "$synth" --jobs 1 --out "$work/sweep" >"$work/sweep.out" 2>&1 &
pid=$!
pids+=("$pid")
wait_for "$work/sweep/sweep.json" "$work/sweep.out"
expect_refused "$pid" run_ablation run_ablation "$work/sweep.toml" --data "$synth" --jobs 1 --out "$work/sweep"
# The run directories are locked by their train processes too: a train into one of them is refused.
run_dir=$(find "$work/sweep/runs" -mindepth 2 -maxdepth 2 -type d | head -1)
wait_for "$run_dir/metrics.jsonl" "$work/sweep.out"
holder=$(cut -d' ' -f1 "$run_dir/.lock")
expect_refused "$holder" train train "${model[@]}" "${common[@]}" --steps 3 --out "$run_dir"
kill -TERM "$pid"
wait "$pid" || true
echo "  run_ablation: the second sweep and a train into one of its runs refused"

# ---- simulate ----
sim=("$bin/simulate" --model "$root/experiments/configs/models/st_moe_l.toml" --hardware tpu_v4 --mesh data:32,model:8
     --layout batch:data,experts:data,d_ff:model,heads:model)
files=(report.md ops.csv summary.json trace.json)
# The two runs alone: every file of the raced directory must be one of these, all from the same run.
"${sim[@]}" --set moe.cf_train=1.5 --out "$work/ref_a" >/dev/null
"${sim[@]}" --set moe.cf_train=3.0 --out "$work/ref_b" >/dev/null
for f in "${files[@]}"; do
  ! cmp -s "$work/ref_a/$f" "$work/ref_b/$f" || fail "the two configs give the same $f: the race could not be told apart"
done
refused=0
for i in $(seq 1 6); do
  "${sim[@]}" --set moe.cf_train=1.5 --out "$work/sim" >"$work/a.out" 2>"$work/a.err" &
  a=$!
  "${sim[@]}" --set moe.cf_train=3.0 --out "$work/sim" >"$work/b.out" 2>"$work/b.err" &
  b=$!
  rc_a=0 rc_b=0
  wait "$a" || rc_a=$?
  wait "$b" || rc_b=$?
  for rc in "$rc_a" "$rc_b"; do [ "$rc" -eq 0 ] || [ "$rc" -eq 2 ] || fail "a simulate exited $rc"; done
  [ "$rc_a" -eq 0 ] || [ "$rc_b" -eq 0 ] || fail "both simulate runs were refused"
  for e in a b; do
    if [ -s "$work/$e.err" ]; then
      grep -qF "is in use by another process" "$work/$e.err" || { cat "$work/$e.err" >&2; fail "simulate $e: unexpected error"; }
      refused=$((refused + 1))
    fi
  done
  from=""
  for f in "${files[@]}"; do
    if cmp -s "$work/sim/$f" "$work/ref_a/$f"; then this=a; elif cmp -s "$work/sim/$f" "$work/ref_b/$f"; then this=b; else
      fail "after race $i: $f is neither run's complete file"
    fi
    [ -z "$from" ] || [ "$from" = "$this" ] || fail "after race $i: the report directory mixes the two runs' files"
    from=$this
  done
done
echo "  simulate: 6 races, $refused refusals by the lock, every report directory whole and from one run"
echo "two_writers: ok"
