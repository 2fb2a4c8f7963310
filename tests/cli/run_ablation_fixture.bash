# Sourced by tests/cli/run_ablation.sh and tests/cli/notebooks.sh (not a test itself: ctest runs
# tests/cli/*.sh only): a small synthetic corpus in Brown format and tiny sweep specs over it, so
# the sweeps run in seconds without the network.

# make_corpus DIR: DIR/corpus-brown with 30 documents, two per genre (as tests/cli/train.sh).
make_corpus() {
  local synth=$1
  mkdir -p "$synth/corpus-brown"
  local dets=(the/at a/at every/at) adjs=(big/jj old/jj green/jj quiet/jj)
  local nouns=(cat/nn river/nn city/nn idea/nn letter/nn) verbs=(saw/vbd crossed/vbd wrote/vbd found/vbd)
  local preps=(in/in near/in of/in) genres=(a b c d e f g h j k l m n p r)
  local d s k file
  for d in $(seq 0 29); do
    file="$synth/corpus-brown/c${genres[$((d % 15))]}0$((d / 15 + 1))"
    for s in $(seq 0 7); do
      k=$((d * 7 + s * 3))
      printf '\n\n\t%s %s %s %s %s %s %s %s ./.\n' "${dets[$((k % 3))]}" "${adjs[$((k % 4))]}" "${nouns[$((k % 5))]}" \
        "${verbs[$((k % 4))]}" "${dets[$(((k + 1) % 3))]}" "${nouns[$(((k + 2) % 5))]}" "${preps[$((k % 3))]}" \
        "${nouns[$(((k + s) % 5))]}" >>"$file"
    done
  done
}

# write_spec FILE STEPS [EXTRA [sweep] LINES] [ARMS...]: a sweep on the tiny model config with the
# synthetic corpus's 130-id vocabulary, one thread per run (bit-reproducible), 2 seeds per arm.
# Without ARMS: "baseline" and "z-loss 1e-2".
write_spec() {
  local file=$1 steps=$2 extra=${3:-}
  shift 3 || shift $#
  cat >"$file" <<SPEC
[sweep]
name = "tiny_test"
model = "$root/experiments/configs/models/tiny.toml"
steps = $steps
vocab = 130
threads = 1
seeds = 2
set = { "model.vocab" = 130, "train.target_length" = 8, "train.eval_batches" = 2 }
$extra
SPEC
  if [ $# -eq 0 ]; then
    printf '\n[[arm]]\nname = "baseline"\n\n[[arm]]\nname = "z-loss 1e-2"\nset = { "moe.z_coef" = 1e-2 }\n' >>"$file"
  else
    printf '%s\n' "$@" >>"$file"
  fi
}
