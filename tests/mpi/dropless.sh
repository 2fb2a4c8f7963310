#!/usr/bin/env bash
# mpiexec -n 2 and -n 4: dropless routing (moe.dropless: every routed choice computed, C = S) of the
# tiny model on data-, expert- and data x expert-parallel layouts, and with device-limited routing
# (experts in 2 groups, each token limited to 1), then with group dispatch: 20 f32 steps match the single-process run within
# 1e-5 relative, expert loads exactly. (The all_to_all of routed rows only is checked at a size
# where the dispatch is kept as nonzeros: tests/executor/test_mpi.cpp, mpi.executor_collectives.)
source "$(dirname "$0")/mpi_fixture.bash"
mpi_setup "$1"
single_reference dropless moe.dropless=true
mesh_case 2 data:2 batch:data,experts:data
mesh_case 2 expert:2 experts:expert
mesh_case 4 data:4 batch:data,experts:data
mesh_case 4 data:2,expert:2 batch:data,experts:expert
single_reference dropless_limited moe.expert_groups=2 moe.route_groups=1
mesh_case 2 data:2 batch:data,experts:data
mesh_case 4 data:2,model:2 batch:data,experts:data,d_ff:model,heads:model
# Group dispatch on top (a token crosses once to each expert group it uses; the groups split as
# the experts: dispatch_group follows the experts rule).
single_reference dropless_group_dispatch moe.group_dispatch=true
mesh_case 2 data:2 batch:data,experts:data
mesh_case 4 data:2,expert:2 batch:data,experts:expert
echo "ok"
