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
e9cde78482b98b9c9ff1a8a237e5a728fed038536614ed8597f1d43a976dd64e  moe/report.md
a76c5d9f35af7f14a10eb89e1c9ba8cf18a567b111fcdbbc1531b2b39ecc51ca  moe/ops.csv
b3a13885b2aca8ab5e8cd035cbfbb77348039b14299a809233973c990c495fc6  moe/summary.json
d566e712d8de00b56e316c8c7cd6f369dbe5f2981352d38fd2de87d750c660ea  moe/trace.json
e5f94f9ed678797c09e9640d51645ed348f38537d386de457bd7b3a2c903976d  dense/report.md
d952a9fa6ccb95a78686f3d59d749c4abb160e44d4b22fdf94b95ee801e56244  dense/ops.csv
f2e13c18fd15e94476770bb3e9f6f9f75990c618fb89432c623c9398f2703cc8  dense/summary.json
2b0f9ae4935f7d1f6efad118cd6e8af0c47d21acd7836306450ac8da3278f0cf  dense/trace.json
ca6183e007b053f061bdfa86f78937acc1f1d78fc361574dcafa6dd2f6966aef  sweep/sweep.csv
SUMS
)
if [ "$sums" != "$expected" ]; then
  echo "FAIL: simulator reports differ from the golden sums" >&2
  diff <(echo "$expected") <(echo "$sums") >&2 || true
  echo "(intended? update with: bash tests/cli/simulate_golden.sh BIN --print)" >&2
  exit 1
fi
echo "simulate golden: all reports match"
