#!/usr/bin/env bash
# bench_distributed on a shrunk bench_moe (2 layers, d_model 64, vocab 512, batch 4 x 32): it
# runs both sides, the two runs compute the same loss, and it prints the scaling efficiency and a
# share for each collective kind the layout needs (all_to_all at the MoE dispatch and combine,
# all_reduce of the gradients), both routing one group per rank without editing the config. The figures themselves are machine-dependent: not checked.
source "$(dirname "$0")/mpi_fixture.bash"
bin=$1
root=$(cd "$(dirname "$0")/../.." && pwd)
out=$(mktemp)
trap 'rm -f "$out"' EXIT
rc=0
timeout 120 "$bin/bench_distributed" --model "$root/experiments/configs/models/bench_moe.toml" --steps 1 --warmup 1 \
  --set model.layers=2 --set model.d_model=64 --set model.d_ff=128 --set model.heads=2 --set model.d_kv=32 \
  --set model.vocab=512 --set train.batch=4 --set train.length=32 >"$out" 2>&1 || rc=$?
[ "$rc" -eq 0 ] || { cat "$out" >&2; fail "bench_distributed: exit code $rc"; }
cat "$out"
# The config sets no group_size: one routing group per data-parallel shard (2 of 4 x 32 / 2
# tokens), in both runs (graph/models/training_graph.hpp).
grep -q "^routing groups: 2 of 64 tokens per MoE layer in both runs$" "$out" || fail "expected 2 routing groups of 64 tokens"
grep -qE "^scaling efficiency: [0-9.]+ " "$out" || fail "no scaling efficiency"
for kind in all_to_all all_reduce; do
  grep -qE "^  $kind +[0-9.]+%" "$out" || fail "no time share for $kind"
done
single=$(sed -n 's/^1 process x 2 threads: .*(loss \([0-9.]*\))$/\1/p' "$out")
ranks=$(sed -n 's/^2 ranks x 1 thread, .*(loss \([0-9.]*\))$/\1/p' "$out")
[ -n "$single" ] && [ "$single" = "$ranks" ] || fail "the two runs' losses differ: '$single' vs '$ranks'"
echo "ok"
