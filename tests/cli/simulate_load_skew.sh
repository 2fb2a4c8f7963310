#!/usr/bin/env bash
# simulate --expert-load / --skew / --ragged-experts (simulator/load_skew.hpp): a metrics.jsonl
# written by a real 3-step `train` run of the tiny model parses and gives report.md "Expert load"
# and summary.json "expert_load" for both MoE layers; with static capacity shapes the step time
# equals the plain run's; --ragged-experts at CF 4 (slots left empty) shortens it; bad values exit 2 naming the flag and
# write nothing.
set -euo pipefail
bin=$1
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
py=/usr/bin/python3
fail() { echo "FAIL: $*" >&2; exit 1; }
expect_in() {  # expect_in FILE TEXT
  grep -qF -- "$2" "$1" || { echo "--- $1:" >&2; cat "$1" >&2; fail "expected '$2' in $1"; }
}
# shellcheck source=tests/cli/run_ablation_fixture.bash
source "$root/tests/cli/run_ablation_fixture.bash"
make_corpus "$work/synth"

tiny="$root/experiments/configs/models/tiny.toml"
sets=(--set model.vocab=160 --set train.target_length=8)
"$bin/train" --model "$tiny" "${sets[@]}" --data "$work/synth" --vocab 160 --threads 1 --steps 3 --out "$work/run" \
  >"$work/train.txt" 2>&1 || { cat "$work/train.txt" >&2; fail "train"; }
sim=("$bin/simulate" --model "$tiny" "${sets[@]}" --hardware tpu_v4 --mesh data:2 --layout batch:data,experts:data)

"${sim[@]}" --out "$work/plain" >/dev/null
"${sim[@]}" --expert-load "$work/run/metrics.jsonl" --expert-load-steps last:2 --out "$work/cap" >/dev/null
# Ragged at CF 4 (C = S = 8: at the tiny CF 1.25, C = 2 and every expert is full, so the rows equal the slots).
"${sim[@]}" --set moe.cf_train=4 --out "$work/plain4" >/dev/null
"${sim[@]}" --set moe.cf_train=4 --expert-load "$work/run/metrics.jsonl" --ragged-experts --out "$work/rag" >/dev/null
expect_in "$work/cap/report.md" "## Expert load"
expect_in "$work/cap/report.md" "mean of steps 2..3, 2 steps"
expect_in "$work/cap/report.md" "| encoder/layer_01/moe | 4 (2) |"
expect_in "$work/cap/report.md" "| decoder/layer_01/moe | 4 (2) |"
"$py" - "$work" "$work/run/metrics.jsonl" <<'PY' || fail "summary.json expert_load"
import json, sys
w = sys.argv[1]
plain, cap, rag, plain4 = (json.load(open(f"{w}/{d}/summary.json")) for d in ("plain", "cap", "rag", "plain4"))
assert "expert_load" not in plain
e = cap["expert_load"]
assert e["backing"] == "capacity" and rag["expert_load"]["backing"] == "ragged", e
lines = [json.loads(l) for l in open(sys.argv[2])]
for layer in e["layers"]:
    want = [(a + b) / 2 for a, b in zip(*(l["moe"][layer["scope"]]["expert_load"] for l in lines[-2:]))]
    assert all(abs(x - y) < 1e-12 for x, y in zip(layer["loads"], want)), (layer["loads"], want)
    assert 0 <= layer["dropped_fraction"] < 1
assert sorted(l["scope"] for l in e["layers"]) == ["decoder/layer_01/moe", "encoder/layer_01/moe"]
assert cap["step_time_s"] == plain["step_time_s"], "static capacity shapes: skew must not change the time"
assert all(l["rows_busiest"] < 1 for l in rag["expert_load"]["layers"]), rag["expert_load"]
assert rag["step_time_s"] < plain4["step_time_s"], "ragged: priced at the busiest device's rows, fewer than the slots"
PY

# Bad values: exit 2, the flag and value named, nothing written.
bad() {  # bad TEXT ARGS...
  local text=$1 code=0; shift
  "${sim[@]}" "$@" --out "$work/never" >"$work/out.txt" 2>"$work/err.txt" || code=$?
  [ "$code" -eq 2 ] || { cat "$work/err.txt" >&2; fail "expected exit 2, got $code for: $*"; }
  expect_in "$work/err.txt" "$text"
  [ ! -e "$work/never" ] || fail "output written despite the error: $*"
}
bad "--skew 'zipf:x'" --skew zipf:x
bad "--skew 'hot:2'" --skew hot:2
bad "--expert-load-steps 'last:0'" --expert-load "$work/run/metrics.jsonl" --expert-load-steps last:0
bad "--expert-load $work/nothing.jsonl: no such file" --expert-load "$work/nothing.jsonl"
bad "exclude each other" --skew uniform --expert-load "$work/run/metrics.jsonl"
echo "ok"
