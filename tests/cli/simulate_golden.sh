#!/usr/bin/env bash
# simulate golden files: a frozen set of configs (an MoE decoder-only model and a dense
# encoder-decoder, with a frozen chip file, all written below) must give reports byte-identical to
# the recorded SHA-256 sums. Any change to what the simulator reports for them shows up here: if
# the change is intended (a cost model was improved, the model builder changed a graph), update the
# sums with `bash tests/cli/simulate_golden.sh build/bin --print` and say why in the commit.
set -euo pipefail
bin=$1
print=${2:-}
# The sums are GCC's. The model builders create nodes inside function arguments and operands
# (e.g. where(future, fill(...), fill(...))), whose evaluation order C++ leaves unspecified: GCC
# evaluates them right to left, clang left to right, so a clang build (the asan preset) builds the
# same graphs in another topological order and its reports list and schedule ops differently.
compiler=$(sed -n 's/^set(CMAKE_CXX_COMPILER_ID "\(.*\)")$/\1/p' "$bin"/../CMakeFiles/*/CMakeCXXCompiler.cmake 2>/dev/null | head -1)
if [ -n "$compiler" ] && [ "$compiler" != "GNU" ] && [ "$print" != "--print" ]; then
  echo "SKIP: the golden sums are for GCC builds; $bin was built with $compiler (another node order)"
  exit 77
fi
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
246081bbd2faf2c9529768954df60faac8e143ed00db52739ecc34b888659f33  moe/report.md
2d7c29612358e72d2534a7eaba36894e9afd1eb800d6d81038a808f9e0344993  moe/ops.csv
db822f68544b9c17804073aa93fa2178ac93e8d4f91e47f7416976c4fffbbeec  moe/summary.json
3cbe7a602326e8603342e51e97f44457de3eff4b638fdf37ada4a860091dd4c1  moe/trace.json
223738335a253693aff9d1baf9f56f23c94fe0d0da6f92aa71b38a4e235ab89d  dense/report.md
30ce82905de73082a52495975a8922f03059eb95ccd6907c54124a362c420a79  dense/ops.csv
c4bed1c8c2be36d3b75f7bbb0cb6d067164edf20bd60490222db110fd1ae8eba  dense/summary.json
63ff85a5fe4d4f22d3dedd895405af0d79dd40e446a2fa4db02494b0195e6b31  dense/trace.json
29a9ccb32f33baefa6c1aaa00d36011eb30888082ded8b9f1ead666d7403f34e  sweep/sweep.csv
SUMS
)
if [ "$sums" != "$expected" ]; then
  echo "FAIL: simulator reports differ from the golden sums" >&2
  diff <(echo "$expected") <(echo "$sums") >&2 || true
  echo "(intended? update with: bash tests/cli/simulate_golden.sh BIN --print)" >&2
  exit 1
fi
echo "simulate golden: all reports match"
