# Sourced by tests/cli/run_ablation.sh and tests/cli/notebooks.sh (not a test itself: ctest runs
# tests/cli/*.sh only): a small synthetic corpus in Brown format and tiny sweep specs over it, so
# the sweeps run in seconds without the network.

# make_corpus DIR: DIR/corpus-brown, the synthetic Brown-format corpus of 30 documents (two per
# genre) written by the one tool for it, `prepare_data --synthetic` (executor/data/corpus.hpp
# make_synthetic_corpus), and its token cache for the tests' vocabulary of $SY_TEST_VOCAB ids
# (60 SentencePiece pieces + 100 sentinels). Needs $bin (the build's bin directory).
SY_TEST_VOCAB=160
make_corpus() {
  "$bin/prepare_data" --data "$1" --synthetic 30 --vocab "$SY_TEST_VOCAB" >/dev/null ||
    { echo "FAIL: prepare_data --synthetic 30 --data $1 failed" >&2; exit 1; }
}

# write_spec FILE STEPS [EXTRA [sweep] LINES] [ARMS...]: a sweep on the tiny model config with the
# synthetic corpus's $SY_TEST_VOCAB-id vocabulary, one thread per run (bit-reproducible), 2 seeds per arm.
# Without ARMS: "baseline" and "z-loss 1e-2".
write_spec() {
  local file=$1 steps=$2 extra=${3:-}
  shift 3 || shift $#
  cat >"$file" <<SPEC
[sweep]
name = "tiny_test"
model = "$root/experiments/configs/models/tiny.toml"
steps = $steps
vocab = $SY_TEST_VOCAB
threads = 1
seeds = 2
set = { "model.vocab" = $SY_TEST_VOCAB, "train.target_length" = 8, "train.eval_batches" = 2 }
$extra
SPEC
  if [ $# -eq 0 ]; then
    printf '\n[[arm]]\nname = "baseline"\n\n[[arm]]\nname = "z-loss 1e-2"\nset = { "moe.z_coef" = 1e-2 }\n' >>"$file"
  else
    printf '%s\n' "$@" >>"$file"
  fi
}
