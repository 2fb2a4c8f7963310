#!/usr/bin/env bash
# calibrate --smoke writes a HardwareSpec that reads back and drives simulate on a one-device
# mesh; bench_sim_accuracy prints predicted, measured and the error for a tiny model. (Plumbing
# only: a smoke table is not a calibration, and timings on a shared machine are noise.)
set -euo pipefail
bin=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

"$bin/calibrate" --smoke --threads 1 --out "$work/host.toml" >"$work/calibrate.txt"
grep -q "wrote $work/host.toml" "$work/calibrate.txt" || fail "calibrate did not report writing the file"
grep -q '^\[efficiency.op.gather\]' "$work/host.toml" || fail "no per-op efficiency table for gather"
grep -q '^matmul_flops_bf16 = ' "$work/host.toml" || fail "no bf16 matmul rate"

cat >"$work/tiny.toml" <<'TOML'
[model]
architecture = "decoder_only"
vocab = 64
d_model = 16
d_ff = 32
heads = 2
d_kv = 8
layers = 2
position_bias = false
[moe]
every = 2
experts = 4
k = 2
policy_train = "all"
[train]
batch = 2
length = 8
TOML
"$bin/simulate" --model "$work/tiny.toml" --hardware "$work/host.toml" --mesh data:1 --out "$work/sim" >/dev/null
[ -s "$work/sim/report.md" ] || fail "simulate on the calibrated spec wrote no report"
"$bin/bench_sim_accuracy" --model "$work/tiny.toml" --hardware "$work/host.toml" --steps 1 --threads 1 >"$work/acc.txt"
grep -qE '^predicted .* measured .* error [+-][0-9.]+ %' "$work/acc.txt" || { cat "$work/acc.txt" >&2; fail "no predicted/measured/error line"; }
echo "calibrate and bench_sim_accuracy: plumbing works"
