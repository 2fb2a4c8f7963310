#!/usr/bin/env bash
# simulate golden files: a frozen set of configs (an MoE decoder-only model and a dense
# encoder-decoder, with a frozen chip file, all written below) must give reports byte-identical to
# the recorded SHA-256 sums. Any change to what the simulator reports for them shows up here: if
# the change is intended (a cost model was improved, the model builder changed a graph), update the
# sums with `bash tests/cli/simulate_golden.sh build/bin --print` and say why in the commit.
set -euo pipefail
bin=$1
print=${2:-}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cat >"$work/chip.toml" <<'TOML'
# Frozen chip for the golden files (TPU v4-like numbers, 2 devices per chip to exercise the core axis).
[chip]
name = "golden_chip"
devices_per_chip = 2
matmul_flops_bf16 = 100e12
matmul_flops_f32 = 25e12
vector_flops = 5e12
hbm_bytes = 1073741824
hbm_bandwidth = 1e12
op_overhead = 1e-7
[ici]
link_bandwidth = 5e10
hop_latency = 1e-6
collective_overhead = 2e-6
torus = [4, 4]
wraparound = "full_axis"
core_link_bandwidth = 4e11
[efficiency.matmul]
compute = [[1e6, 0.1], [1e9, 0.6], [1e12, 0.8]]
memory = [[1e4, 0.1], [1e8, 0.8]]
[efficiency.elementwise]
memory = [[1e4, 0.1], [1e8, 0.8]]
[efficiency.reduction]
memory = [[1e4, 0.1], [1e8, 0.7]]
TOML

cat >"$work/moe.toml" <<'TOML'
[model]
architecture = "decoder_only"
vocab = 512
d_model = 64
d_ff = 128
heads = 4
d_kv = 16
layers = 2
position_bias = false
[moe]
every = 2
experts = 8
k = 2
policy_train = "all"
cf_train = 1.25
group_size = 256
min_capacity = 1
[train]
batch = 32
length = 64
TOML

cat >"$work/dense.toml" <<'TOML'
[model]
architecture = "encoder_decoder"
vocab = 256
d_model = 32
d_ff = 64
heads = 2
d_kv = 16
encoder_layers = 1
decoder_layers = 1
[train]
batch = 8
input_length = 16
target_length = 8
TOML

bin=$(cd "$bin" && pwd)
cd "$work"  # relative paths: the reports name the files given, and must not name a temporary directory
"$bin/simulate" --model moe.toml --hardware ./chip.toml --mesh data:4,model:2 \
  --layout batch:data,experts:data,d_ff:model,heads:model --out moe >/dev/null
"$bin/simulate" --model dense.toml --hardware ./chip.toml --mesh data:2,model:2 \
  --layout batch:data,d_ff:model,heads:model,vocab:model --optimizer adamw --out dense >/dev/null
"$bin/simulate" --model moe.toml --hardware ./chip.toml --mesh data:4,model:2 --sweep --refine 2 --out sweep >/dev/null

sums=$(sha256sum moe/report.md moe/ops.csv moe/summary.json moe/trace.json \
  dense/report.md dense/ops.csv dense/summary.json dense/trace.json sweep/sweep.csv)
if [ "$print" = "--print" ]; then
  echo "$sums"
  exit 0
fi
expected=$(cat <<'SUMS'
34d28075b71098658bf1304cea2c44df535f06dc0e236d94d5be8322824ff849  moe/report.md
37c708476160b1c0f5c4b1d741bcf193ee8e65816fc9cb81c80b52d5892ba004  moe/ops.csv
a91f5630f673a8742e7592e04c91d692aeb715ff626cba98c49eaa8e4bf5b2b5  moe/summary.json
9e23753645272c7eb6fbe2fb17d8039fd875020295498619376099afe0096d78  moe/trace.json
f91cb65190093229b18a64012db6aa0ffd2daed035a2bb1cd3a7f0b680e90724  dense/report.md
253ace6ba1706ffcd8a05800cce1ef63b49355e18ff5b9543fcf457970417ca8  dense/ops.csv
8f1a27d89296e3a7ff7248150325c9bf46b94b8d48d687a559f986d035b33925  dense/summary.json
df958c22e4c97dfc614071402abe53813ab74afdd515fb740ff548c739b9f44f  dense/trace.json
78f43e49d5cfa5aa148aa73748c64a24d0f5a9edc1ee10f062900a825dc956db  sweep/sweep.csv
SUMS
)
if [ "$sums" != "$expected" ]; then
  echo "FAIL: simulator reports differ from the golden sums" >&2
  diff <(echo "$expected") <(echo "$sums") >&2 || true
  echo "(intended? update with: bash tests/cli/simulate_golden.sh BIN --print)" >&2
  exit 1
fi
echo "simulate golden: all reports match"
