#!/usr/bin/env bash
# One trace schema (graph/trace_schema.hpp): a step measured by `train --trace` and the same step
# priced by `simulate` on a one-device mesh, for the same config and --set overrides (tiny.toml,
# an encoder-decoder with Adafactor, and a decoder-only MoE with AdamW and a cosine schedule):
#   - both trace.json files are "switchyard.trace v1" with the same metadata layout (process_name,
#     thread names "steps" and "compute") and the same event fields;
#   - each traced step's set of (node id, op name, scope) equals the simulated step's set exactly,
#     with the same flops and bytes per node (scripts/trace_diff.py --check, and a direct check);
#   - trace_diff.py prints the per-phase and per-kind tables, --nodes one row per node, and exits
#     2 with one line for a missing file, a file that is not a trace and a step not traced.
set -euo pipefail
bin=$1
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
py=/usr/bin/python3
diff_py="$root/scripts/trace_diff.py"

fail() { echo "FAIL: $*" >&2; exit 1; }
expect_in() {  # expect_in FILE TEXT
  grep -qF -- "$2" "$1" || { echo "--- $1:" >&2; cat "$1" >&2; fail "expected '$2' in $1"; }
}
expect_diff_exit2() {  # expect_diff_exit2 TEXT ARGS...: trace_diff exits 2 with one line naming TEXT
  local text=$1 code=0
  shift
  "$py" "$diff_py" "$@" >"$work/out.txt" 2>"$work/err.txt" || code=$?
  [ "$code" -eq 2 ] || { cat "$work/err.txt" >&2; fail "trace_diff $*: exit $code, expected 2"; }
  [ "$(wc -l <"$work/err.txt")" -eq 1 ] || { cat "$work/err.txt" >&2; fail "trace_diff $*: expected one line on stderr"; }
  expect_in "$work/err.txt" "$text"
}

source "$root/tests/cli/run_ablation_fixture.bash"  # make_corpus
make_corpus "$work/synth"

cp "$root/tests/data/tiny_decoder_160.toml" "$work/dec.toml"

# compare NAME MODEL SETS...: train 2 steps (both traced) and simulate the same config on data:1.
compare() {
  local name=$1 model=$2
  shift 2
  local sets=("$@")
  "$bin/train" --model "$model" "${sets[@]}" --data "$work/synth" --vocab "$SY_TEST_VOCAB" --threads 1 --steps 2 --trace 1-2 \
    --out "$work/$name/run" >"$work/$name.train.txt" 2>&1 || { cat "$work/$name.train.txt" >&2; fail "$name: train failed"; }
  # --no-fusion: per-op costs, node for node what the executor runs (fusion prices groups at their root).
  "$bin/simulate" --model "$model" "${sets[@]}" --hardware tpu_v4 --mesh data:1 --no-fusion --out "$work/$name/sim" \
    >"$work/$name.sim.txt" 2>&1 || { cat "$work/$name.sim.txt" >&2; fail "$name: simulate failed"; }
  local measured="$work/$name/run/trace.json" simulated="$work/$name/sim/trace.json"

  "$py" - "$measured" "$simulated" <<'EOF' || fail "$name: the two traces do not share the schema or the program"
import json, sys
m, s = (json.load(open(p)) for p in sys.argv[1:3])
for t, source in ((m, "measured"), (s, "simulated")):
    other = {k: v for k, v in t["otherData"].items() if k != "clock_origin_us"}  # measured traces: the rank's clock
    assert other == {"schema": "switchyard.trace v1", "source": source}, t["otherData"]
    meta = [e for e in t["traceEvents"] if e["ph"] == "M"]
    assert meta[0]["name"] == "process_name" and meta[0]["pid"] == 0, meta[0]
    assert meta[0]["args"]["name"].startswith("device 0 of "), meta[0]
    threads = {e["tid"]: e["args"]["name"] for e in meta if e["name"] == "thread_name"}
    assert threads[0] == "steps" and threads[1] == "compute", threads
    assert all(v.startswith("ici:") for k, v in threads.items() if k > 1), threads
    for e in t["traceEvents"]:
        if e["ph"] != "X":
            continue
        keys = ["name", "cat", "ph", "pid", "tid", "ts", "dur", "args"]
        assert list(e) == keys, e
        if e["cat"] == "step":
            assert e["tid"] == 0 and e["name"] == f"step {e['args']['step']}", e
        else:
            assert e["cat"] in ("forward", "backward", "optimizer"), e
            assert list(e["args"])[:5] == ["node", "scope", "step", "flops", "bytes"], e
            assert e["tid"] >= 1, e

def ops(t, step):
    return {(e["args"]["node"], e["name"], e["args"]["scope"]): (e["args"]["flops"], e["args"]["bytes"], e["cat"])
            for e in t["traceEvents"] if e["ph"] == "X" and e["cat"] != "step" and e["args"]["step"] == step}
sim = ops(s, 1)
assert sim, "no simulated ops"
assert any(k[1] in ("adafactor_update", "adamw_update") for k in sim), "no optimizer updates"
for step in (1, 2):
    got = ops(m, step)
    assert set(got) == set(sim), (step, sorted(set(got) ^ set(sim))[:10])
    assert got == sim, (step, [k for k in sim if got[k] != sim[k]][:10])
EOF

  "$py" "$diff_py" "$measured" "$simulated" --check >"$work/$name.diff.txt" ||
    { cat "$work/$name.diff.txt" >&2; fail "$name: trace_diff --check found differences"; }
  expect_in "$work/$name.diff.txt" "only measured:  -"
  expect_in "$work/$name.diff.txt" "only simulated: -"
  expect_in "$work/$name.diff.txt" "op or scope differ: -"
  for row in forward backward optimizer einsum "all ops"; do expect_in "$work/$name.diff.txt" "$row "; done
}

compare tiny "$root/experiments/configs/models/tiny.toml" --set model.vocab="$SY_TEST_VOCAB" --set train.target_length=8
compare decoder "$work/dec.toml"
expect_in "$work/decoder.diff.txt" "adamw_update"

# --nodes and --step: one row per node of the step.
m="$work/tiny/run/trace.json" s="$work/tiny/sim/trace.json"
"$py" "$diff_py" "$m" "$s" --step 2 --nodes >"$work/nodes.txt"
expect_in "$work/nodes.txt" "step 2"
expect_in "$work/nodes.txt" "adafactor_update     optimizer/"
# A different program (another batch size) is reported and fails --check.
"$bin/simulate" --model "$root/experiments/configs/models/tiny.toml" --set model.vocab="$SY_TEST_VOCAB" --set train.target_length=8 \
  --set train.batch=4 --hardware tpu_v4 --mesh data:1 --no-fusion --out "$work/other" >/dev/null
code=0
"$py" "$diff_py" "$m" "$work/other/trace.json" --check >"$work/out.txt" 2>"$work/err.txt" || code=$?
[ "$code" -eq 1 ] || fail "trace_diff --check of different programs: exit $code, expected 1"
expect_in "$work/out.txt" "flops or bytes differ: 0"

# Bad input: exit 2, one line.
"$py" "$diff_py" --help >"$work/help.txt"
expect_in "$work/help.txt" "--nodes"
expect_diff_exit2 "cannot read" "$work/missing.json" "$s"
expect_diff_exit2 "not a trace" "$work/tiny/sim/report.md" "$s"
expect_diff_exit2 "not a switchyard trace" "$m" "$work/tiny/sim/summary.json"
expect_diff_exit2 "--step 7" "$m" "$s" --step 7
expect_diff_exit2 "required" "$m"
echo "trace schema: measured and simulated traces name the same ops"
