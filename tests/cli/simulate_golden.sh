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
ae706914d7c64563d26bab8da1c1e2d2926769763e02aae6e0b88dbc96c7f7ea  moe/report.md
1557378d523228dd0537c67d723ad0a54d9157943752737acd261524c80e2e23  moe/ops.csv
64dd609cdbafd2348654284ce9e6b7c9b459f6b4fca313239b61fe9a9fa4fc04  moe/summary.json
d20c90028ac91cac9f1662c490da5d7d070ba30a2d1ece0a3d58dee192a41b1e  moe/trace.json
b7a1ce1d9512613e31680e2d72d48fd50c8619531c70535ce14258d1236ffa16  dense/report.md
f7fbc5123a1173e3767c151a9e0fda6ec9ff488613a0bbe27b30fa99eeaa374f  dense/ops.csv
887f5284f7f32c00ab776da4c28d43ff4b29fc72e77df75a29266cfa336e04f6  dense/summary.json
aa67092442cf52b055c1137b65af92c4bf66fbf9f4cd66dc6616bd90c2a71e9f  dense/trace.json
23ea1234aa159c8e9f9202ef14e80d72727606184712ea6dabe68a0f3216f44e  sweep/sweep.csv
SUMS
)
if [ "$sums" != "$expected" ]; then
  echo "FAIL: simulator reports differ from the golden sums" >&2
  diff <(echo "$expected") <(echo "$sums") >&2 || true
  echo "(intended? update with: bash tests/cli/simulate_golden.sh BIN --print)" >&2
  exit 1
fi
echo "simulate golden: all reports match"
