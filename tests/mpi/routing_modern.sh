#!/usr/bin/env bash
# mpiexec -n 2 and -n 4: the post-ST-MoE router of the tiny model (sigmoid scores, experts in 2
# groups with each token limited to 1 group, a shared expert, auxiliary-loss-free bias balancing,
# the sequence-wise balance loss) on data-, expert- and data x expert-parallel layouts: 20 f32
# steps match the single-process run within 1e-5 relative, expert loads exactly (the balance bias
# moves the same way on every mesh, or the loads would part).
source "$(dirname "$0")/mpi_fixture.bash"
mpi_setup "$1"
single_reference modern moe.score=sigmoid moe.expert_groups=2 moe.route_groups=1 moe.shared_experts=1 \
  moe.bias_balance_rate=0.01 moe.balance=sequence moe.balance_coef=1e-3
mesh_case 2 data:2 batch:data
mesh_case 2 expert:2 experts:expert
mesh_case 2 data:2 batch:data,experts:data
mesh_case 2 model:2 d_ff:model,heads:model
mesh_case 4 data:2,expert:2 batch:data,experts:expert
mesh_case 4 data:2,model:2 batch:data,experts:data,d_ff:model,heads:model
# The same with group dispatch, under capacity (drops at the group stage too).
single_reference modern_group_dispatch moe.group_dispatch=true
mesh_case 2 data:2 batch:data,experts:data
mesh_case 4 data:2,expert:2 batch:data,experts:expert
# The bias moved: some step's metrics hold a non-zero balance_bias for every MoE layer (it moves
# by ±γ per step, so it may be back at 0 by the last one).
/usr/bin/python3 - "$reference/metrics.jsonl" <<'PY'
import json, sys
steps = [json.loads(l) for l in open(sys.argv[1])]
for layer in steps[0]["moe"]:
    largest = max(max(abs(b) for b in s["moe"][layer]["balance_bias"]) for s in steps)
    if largest == 0:
        sys.exit(f"{layer}: the balance bias never moved in {len(steps)} steps")
    print(f"  {layer}: balance bias reached ±{largest:.3g}")
PY
echo "ok"
