#!/usr/bin/env bash
# mpiexec -n 2: data-parallel, expert-parallel, data x expert on one axis (the MoE dispatch and
# combine become all-to-alls) and model-parallel (d_ff, heads) layouts of the tiny MoE model:
# 20 f32 steps match the single-process run within 1e-5 relative, expert loads exactly.
source "$(dirname "$0")/mpi_fixture.bash"
mpi_setup "$1"
mesh_case 2 data:2 batch:data
mesh_case 2 expert:2 experts:expert
mesh_case 2 data:2 batch:data,experts:data
mesh_case 2 model:2 d_ff:model,heads:model
echo "ok"
