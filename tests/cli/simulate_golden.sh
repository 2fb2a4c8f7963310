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
f92663291fc45a4371bac2a03679f85b1ce14eef08d34ebd206175348ffa1ec3  moe/report.md
3722d29ea575013b1d7c8086777af91073248c21ed1d3f70afe704347de3e740  moe/ops.csv
79d6c9e42bd7e80b6dfb5220e74dfe3d45dcd4a1d6a18d06deb6df3f84b2ce02  moe/summary.json
1a3d40249b0b236e04e40780d8f03a18be047ee33f5774d672bb798f744f8996  moe/trace.json
7b451b4e6e8bc8a3fc7f1deaed04108234e5877ea5acfa2f3a13433a3c02c6c9  dense/report.md
e80c6393c0edf151b360abe9bfe5e650e369c03b3ff89878e1cc5a6e3943b4c7  dense/ops.csv
9e51546b2ff021696014012456f25fe8f158e16644d931cbba8e91f31b67a9e8  dense/summary.json
fc28a9cb64ceabab9ee60a4f1c861a5d8c27b9ad28406318d3315769581eb103  dense/trace.json
124d6e60216c6102cf67dd6e0e5768a042e20b95d8f4c84def5f6d9952a61b73  sweep/sweep.csv
SUMS
)
if [ "$sums" != "$expected" ]; then
  echo "FAIL: simulator reports differ from the golden sums" >&2
  diff <(echo "$expected") <(echo "$sums") >&2 || true
  echo "(intended? update with: bash tests/cli/simulate_golden.sh BIN --print)" >&2
  exit 1
fi
echo "simulate golden: all reports match"
