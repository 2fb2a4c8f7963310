#!/usr/bin/env bash
# experiments/bench_scaling --quick: every configuration of each axis runs through bench_train_step
# and lands in the table with a finite growth figure; bad options exit 2. (Plumbing only: the
# timings of --quick are not a measurement.)
set -euo pipefail
bin=$1
root="$(cd "$(dirname "$0")/../.." && pwd)"
build="$(dirname "$bin")"
out=$("$root/experiments/bench_scaling" --quick --build "$build" 2>/dev/null)
echo "$out"
for row in '| d_model | 64 |' '| d_model | 128 |' '| experts | 4 |' '| experts | 8 |' '| length | 32 |' '| length | 64 |'; do
  grep -qF "$row" <<<"$out" || { echo "FAIL: no row '$row'"; exit 1; }
done
for first in '| d_model | 64 |' '| experts | 4 |' '| length | 32 |'; do  # another row may round to 1.00 too
  grep -F "$first" <<<"$out" | grep -q '| 1.00 |$' || { echo "FAIL: the first row '$first' has growth 1.00"; exit 1; }
done
set +e
"$root/experiments/bench_scaling" --precision f16 --build "$build" 2>/dev/null; rc=$?
set -e
[ "$rc" -eq 2 ] || { echo "FAIL: --precision f16 exited $rc, expected 2"; exit 1; }
echo "bench_scaling --quick: ok"
