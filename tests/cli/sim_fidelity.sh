#!/usr/bin/env bash
# bench_sim_fidelity --quick: GShard's expert scaling (128, 512, 2048 experts on TPU v3 slices
# 8x8, 16x16, 32x32) and the scaling book's all-gathers; the tool exits non-zero when the
# all-to-all time or share does not grow with the expert count.
set -euo pipefail
bin=$1
out=$("$bin/bench_sim_fidelity" --quick)
echo "$out"
grep -q '| 128 | 128 | 8x8 chips |' <<<"$out"
grep -q '| 512 | 512 | 16x16 chips |' <<<"$out"
grep -q '| 2048 | 2048 | 32x32 chips |' <<<"$out"
grep -q 'all-gather over X and Y' <<<"$out"
echo "bench_sim_fidelity --quick: ok"
