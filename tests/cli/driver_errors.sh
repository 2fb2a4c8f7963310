#!/usr/bin/env bash
# Every driver in experiments/ shares tool_main's exit policy: an unknown flag, a missing required
# flag (or a flag without its value) and a bad value each exit 2 with exactly one line on stderr
# that names the flag, write nothing to the working directory, and --help exits 0. The list of
# drivers is checked against the build's CMake list, so a new tool cannot skip this test.
set -euo pipefail
bin=$1
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
tiny="$root/experiments/configs/models/tiny.toml"

fail() { echo "FAIL: $*" >&2; exit 1; }

# expect_bad NAME WORD -- ARGS...: exit 2, one stderr line naming WORD, nothing written here.
expect_bad() {
  local name=$1 word=$2; shift 3
  local rc=0
  "$bin/$name" "$@" >"$work/.out" 2>"$work/.err" </dev/null || rc=$?
  [ "$rc" -eq 2 ] || { cat "$work/.err" >&2; fail "$name $*: exit $rc, expected 2"; }
  local lines; lines=$(wc -l <"$work/.err")
  [ "$lines" -eq 1 ] || { cat "$work/.err" >&2; fail "$name $*: $lines lines on stderr, expected 1"; }
  grep -qF -- "$name: " "$work/.err" || fail "$name $*: the line does not start with the tool's name: $(cat "$work/.err")"
  grep -qF -- "$word" "$work/.err" || fail "$name $*: the line does not name '$word': $(cat "$work/.err")"
  [ -z "$(ls -A "$work" | grep -v '^\.out$\|^\.err$' || true)" ] || fail "$name $*: wrote $(ls -A "$work")"
}

# One row per driver: unknown flag; missing required flag or value; bad value.
check_driver() {
  local name=$1
  "$bin/$name" --help >/dev/null 2>&1 || fail "$name --help did not exit 0"
  local base=()  # the required arguments, so that --bogus is the only thing wrong
  case $name in
    calibrate) base=(--out host.toml) ;;
    inspect) base=("$root/experiments/graphs/mlp.json") ;;
    run_ablation) base=(spec.toml) ;;
    simulate) base=(--model "$tiny" --hardware tpu_v3 --mesh data:2 --out o) ;;
    train) base=(--model "$tiny" --steps 1 --out o) ;;
  esac
  expect_bad "$name" --bogus -- "${base[@]}" --bogus
  case $name in
    bench_matmul)
      expect_bad "$name" --reps -- --reps
      expect_bad "$name" --reps -- --reps 0 ;;
    bench_train_step)
      expect_bad "$name" --steps -- --steps
      expect_bad "$name" --precision -- --precision f16 ;;
    bench_distributed)
      expect_bad "$name" --steps -- --steps
      expect_bad "$name" --ranks -- --ranks 0 ;;
    bench_sim_accuracy)
      expect_bad "$name" --steps -- --steps
      expect_bad "$name" --clock -- --clock sundial ;;
    bench_sim_fidelity)
      expect_bad "$name" --quick -- --quick=maybe ;;
    bench_simulator)
      expect_bad "$name" --seconds -- --seconds
      expect_bad "$name" --threads -- --threads 0 ;;
    calibrate)
      expect_bad "$name" --out -- --smoke
      expect_bad "$name" --clock -- --out host.toml --clock sundial ;;
    inspect)
      expect_bad "$name" file --
      expect_bad "$name" nope.json -- nope.json ;;
    prepare_data)
      expect_bad "$name" --vocab -- --vocab
      expect_bad "$name" --vocab -- --vocab many ;;
    run_ablation)
      expect_bad "$name" spec --
      expect_bad "$name" --jobs -- spec.toml --jobs 0 ;;
    simulate)
      expect_bad "$name" --model -- --hardware tpu_v3 --mesh data:2 --out o
      expect_bad "$name" data:x -- --model "$tiny" --hardware tpu_v3 --mesh data:x --out o ;;
    train)
      expect_bad "$name" --out -- --model "$tiny" --steps 1
      expect_bad "$name" --steps -- --model "$tiny" --steps 0 --out o ;;
    *) fail "driver $name has no row in tests/cli/driver_errors.sh" ;;
  esac
}

drivers=$(grep -oE '^sy_tool\([a-z_]+' "$root/experiments/CMakeLists.txt" | sed 's/sy_tool(//')
[ "$(echo "$drivers" | wc -l)" -ge 11 ] || fail "found only: $drivers"
for d in $drivers; do check_driver "$d"; done
echo "ok: $(echo "$drivers" | wc -w) drivers"
