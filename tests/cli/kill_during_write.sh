#!/usr/bin/env bash
# SIGKILL during every kind of write (issue #16): a writer killed at a random moment leaves each of
# its files either as it was or complete (graph/file_io.hpp: atomic rewrites, checked appends),
# and the next run continues from there to the same result as a run never killed.
#   - train, every step a checkpoint (checkpoint.safetensors), a metrics.jsonl append, status.json
#     at start and end, evaluations every 25 steps: killed N times at random points, each time
#     resumed (--resume; from scratch while no checkpoint exists yet). After every kill:
#     metrics.jsonl holds whole JSON lines for steps 1..k, status.json parses, the checkpoint's
#     header parses and its tensors end where the file ends. At the end the metrics (loss,
#     cross-entropy, gradient norm, evaluations) equal the uninterrupted run's exactly (resume is
#     bit for bit) and no temporary of a killed writer is left (graph/output_dir.hpp).
#   - simulate (report.md, ops.csv, summary.json, trace.json): killed N times while rewriting a
#     complete report directory; every file stays byte-identical to the complete version (the old
#     and the new one are the same text).
#   - run_ablation (sweep.json, results.csv, summary.md, each run's result.json and its train
#     process's files): the whole process group killed N times at random points, each time re-run
#     (it resumes); results.csv stays a whole table (every row as many fields as the header) and
#     the finished sweep equals the uninterrupted one in every column but the timings.
# Random points: uniform over the measured length of an uninterrupted run ($RANDOM, seed printed).
set -euo pipefail
bin=$1
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
seed=${SY_KILL_SEED:-$$}
RANDOM=$seed
echo "kill points from seed $seed (SY_KILL_SEED=$seed to repeat)"
# shellcheck source=tests/cli/run_ablation_fixture.bash
source "$root/tests/cli/run_ablation_fixture.bash"
make_corpus "$work/synth"
tiny="$root/experiments/configs/models/tiny.toml"
common=(--data "$work/synth" --vocab "$SY_TEST_VOCAB" --threads 1)
model=(--model "$tiny" --set model.vocab="$SY_TEST_VOCAB" --set train.target_length=8 --set train.eval_batches=2)
steps=300
run_args=(--steps "$steps" --checkpoint-every 1 --eval-every 25)

now_ms() { date +%s%3N; }
# random_ms MAX: a delay in 0..MAX ms
random_ms() { echo $(( (RANDOM * 32768 + RANDOM) % ($1 + 1) )); }
sleep_ms() { sleep "$(printf '%d.%03d' $(($1 / 1000)) $(($1 % 1000)))"; }

# check_train_dir DIR: every file of a train run directory is whole.
check_train_dir() {
  /usr/bin/python3 - "$1" <<'PY' || fail "after a kill: $1 holds a partial file (above)"
import json, os, sys
d = sys.argv[1]
m = os.path.join(d, "metrics.jsonl")
if os.path.exists(m):
    text = open(m).read()
    assert text == "" or text.endswith("\n"), "metrics.jsonl ends in a partial line"
    steps = [json.loads(line)["step"] for line in text.splitlines()]
    assert steps == list(range(1, len(steps) + 1)), f"metrics.jsonl steps {steps}"
s = os.path.join(d, "status.json")
if os.path.exists(s):
    assert json.load(open(s))["status"] in ("running", "completed"), "status.json"
c = os.path.join(d, "checkpoint.safetensors")
if os.path.exists(c):
    b = open(c, "rb").read()
    n = int.from_bytes(b[:8], "little")
    h = json.loads(b[8:8 + n])
    end = max(t["data_offsets"][1] for k, t in h.items() if k != "__metadata__")
    assert 8 + n + end == len(b), f"checkpoint: tensors end at {8 + n + end}, the file at {len(b)}"
PY
}

# ---- train ----
start=$(now_ms)
"$bin/train" "${model[@]}" "${common[@]}" "${run_args[@]}" --out "$work/ref" >"$work/ref.log" 2>&1 ||
  { cat "$work/ref.log" >&2; fail "the uninterrupted train run failed"; }
span=$(( $(now_ms) - start ))
run="$work/run"
kills=0
for i in $(seq 1 8); do
  if [ -f "$run/checkpoint.safetensors" ]; then
    args=(--resume "$run" "${common[@]}" "${run_args[@]}" --out "$run")
  else
    args=("${model[@]}" "${common[@]}" "${run_args[@]}" --out "$run")
  fi
  "$bin/train" "${args[@]}" >"$work/run.log" 2>&1 &
  pid=$!
  delay=$(random_ms $((span / 5)))  # 8 kills of at most a fifth of a run each: the run is not done by then
  sleep_ms "$delay"
  if kill -9 "$pid" 2>/dev/null; then kills=$((kills + 1)); fi
  wait "$pid" 2>/dev/null || true
  check_train_dir "$run"
  echo "  train: kill $i after ${delay} ms: $(wc -l <"$run/metrics.jsonl" 2>/dev/null || echo 0) metrics lines"
done
[ "$kills" -ge 4 ] || fail "only $kills of 8 train runs were still running when killed (the runs are too short)"
if [ -f "$run/checkpoint.safetensors" ]; then
  "$bin/train" --resume "$run" "${common[@]}" "${run_args[@]}" --out "$run" >"$work/run.log" 2>&1 ||
    { cat "$work/run.log" >&2; fail "the resume after the kills failed"; }
else
  "$bin/train" "${model[@]}" "${common[@]}" "${run_args[@]}" --out "$run" >"$work/run.log" 2>&1 ||
    { cat "$work/run.log" >&2; fail "the run after the kills failed"; }
fi
check_train_dir "$run"
/usr/bin/python3 - "$work/ref" "$run" <<'PY' || fail "the killed and resumed run differs from the uninterrupted one"
import json, sys
def metrics(d):
    rows = []
    for line in open(f"{d}/metrics.jsonl"):
        j = json.loads(line)
        rows.append({k: j.get(k) for k in ("step", "loss", "cross_entropy", "grad_norm", "eval")})
    return rows
a, b = metrics(sys.argv[1]), metrics(sys.argv[2])
assert len(a) == len(b) == 300, (len(a), len(b))
for x, y in zip(a, b):
    assert x == y, f"step {x['step']}: {x} vs {y}"
sa, sb = json.load(open(f"{sys.argv[1]}/status.json")), json.load(open(f"{sys.argv[2]}/status.json"))
assert sa["status"] == sb["status"] == "completed"
assert sa.get("eval") == sb.get("eval"), "final evaluation"
PY
left=$(find "$run" -name '*.tmp.*' | wc -l)
[ "$left" -eq 0 ] || fail "temporaries of killed writers left in $run: $(find "$run" -name '*.tmp.*' | head -3)"
echo "  train: $kills kills in runs of ${span} ms, the resumed run equals the uninterrupted one (300 steps)"

# ---- simulate ----
sim=("$bin/simulate" --model "$root/experiments/configs/models/st_moe_l.toml" --hardware tpu_v4 --mesh data:32,model:8
     --layout batch:data,experts:data,d_ff:model,heads:model)
start=$(now_ms)
"${sim[@]}" --out "$work/sim_ref" >/dev/null
span=$(( $(now_ms) - start ))
cp -a "$work/sim_ref" "$work/sim"
"${sim[@]}" --out "$work/sim" >/dev/null
for f in report.md ops.csv summary.json trace.json; do
  cmp -s "$work/sim_ref/$f" "$work/sim/$f" || fail "simulate is not deterministic: $f differs between two runs"
done
kills=0
for i in $(seq 1 8); do
  "${sim[@]}" --out "$work/sim" >/dev/null 2>&1 &
  pid=$!
  sleep_ms "$(random_ms "$span")"
  if kill -9 "$pid" 2>/dev/null; then kills=$((kills + 1)); fi
  wait "$pid" 2>/dev/null || true
  for f in report.md ops.csv summary.json trace.json; do
    cmp -s "$work/sim_ref/$f" "$work/sim/$f" || fail "after kill $i: $f is not the complete report file"
  done
done
"${sim[@]}" --out "$work/sim" >/dev/null
[ "$(find "$work/sim" -name '*.tmp.*' | wc -l)" -eq 0 ] || fail "temporaries of killed simulate runs left in $work/sim"
echo "  simulate: $kills kills (of 8) in ${span} ms runs, every report file whole"

# ---- run_ablation ----
write_spec "$work/sweep.toml" 40
start=$(now_ms)
"$bin/run_ablation" "$work/sweep.toml" --data "$work/synth" --jobs 1 --out "$work/abl_ref" >"$work/abl.log" 2>&1 ||
  { cat "$work/abl.log" >&2; fail "the uninterrupted sweep failed"; }
span=$(( $(now_ms) - start ))
kills=0
for i in $(seq 1 6); do
  setsid "$bin/run_ablation" "$work/sweep.toml" --data "$work/synth" --jobs 1 --out "$work/abl" >"$work/abl.log" 2>&1 &
  pid=$!
  sleep_ms "$(random_ms $((span / 4)))"
  if kill -9 -- "-$pid" 2>/dev/null; then kills=$((kills + 1)); fi  # the sweep and its train processes
  wait "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do pgrep -g "$pid" >/dev/null || break; sleep 0.1; done
  if [ -f "$work/abl/results.csv" ]; then
    awk -F, 'NR == 1 { n = NF } NF != n { exit 1 }' "$work/abl/results.csv" || fail "after kill $i: results.csv is not a whole table"
  fi
  [ ! -f "$work/abl/sweep.json" ] || /usr/bin/python3 -c "import json,sys; json.load(open(sys.argv[1]))" "$work/abl/sweep.json" ||
    fail "after kill $i: sweep.json is not whole"
  for d in "$work"/abl/runs/*/*/; do [ -d "$d" ] && check_train_dir "$d"; done
done
[ "$kills" -ge 4 ] || fail "only $kills of 6 sweeps were still running when killed"
"$bin/run_ablation" "$work/sweep.toml" --data "$work/synth" --jobs 1 --out "$work/abl" >"$work/abl.log" 2>&1 ||
  { cat "$work/abl.log" >&2; fail "the sweep after the kills failed"; }
/usr/bin/python3 - "$work/abl_ref/results.csv" "$work/abl/results.csv" <<'PY' || fail "the killed and re-run sweep differs from the uninterrupted one"
import csv, sys
timing = {"tokens_per_s", "wall_seconds", "dir"}
def rows(p):
    return [{k: v for k, v in r.items() if k not in timing} for r in csv.DictReader(open(p))]
a, b = rows(sys.argv[1]), rows(sys.argv[2])
assert len(a) == len(b) == 4, (len(a), len(b))
for x, y in zip(a, b):
    assert x == y, f"{x} vs {y}"
PY
echo "  run_ablation: $kills kills (of 6) in ${span} ms sweeps, results equal the uninterrupted sweep's"
echo "kill_during_write: ok"
