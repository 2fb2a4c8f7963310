#!/usr/bin/env bash
# Resume on a mesh repeats the uninterrupted mesh run bit for bit, with Adafactor (whose
# statistics are reduced over the mesh axes that split each tensor, so every device holds the same
# replicated state): 20 steps on the mesh, against 10 steps, stop, --resume to 20 on the same mesh;
# metrics byte-identical up to the wall-clock keys, final checkpoints identical. On data:2 with
# batch:data,experts:data (the README's layout) and on data:2,model:2.
source "$(dirname "$0")/mpi_fixture.bash"
mpi_setup "$1"
ada=(--model "$root/experiments/configs/models/tiny.toml" --set model.vocab="$SY_TEST_VOCAB" --set train.target_length=8
     --set train.batch=4 --set moe.group_size=8 --set train.optimizer=adafactor)

same_metrics() {  # same_metrics A B: each line byte-identical before the timing keys
  /usr/bin/python3 - "$1/metrics.jsonl" "$2/metrics.jsonl" <<'PY'
import sys
def lines(path):
    return [raw[: raw.index(',"step_seconds"')] for raw in open(path)]
a, b = lines(sys.argv[1]), lines(sys.argv[2])
if len(a) != 20 or a != b:
    n = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    sys.exit(f"metrics differ at line {n + 1} ({len(a)} vs {len(b)} lines)")
PY
}

resume_case() {  # resume_case N MESH LAYOUT
  local n=$1 mesh=$2 layout=$3 dir="$work/$2"
  echo "mpiexec -n $n train --mesh $mesh --layout $layout: 20 steps vs 10 + --resume to 20"
  mpi_train "$n" "${ada[@]}" "${data[@]}" --steps 20 --mesh "$mesh" --layout "$layout" --out "$dir-whole"
  expect_ok "20 steps on $mesh"
  mpi_train "$n" "${ada[@]}" "${data[@]}" --steps 10 --mesh "$mesh" --layout "$layout" --out "$dir-resumed"
  expect_ok "10 steps on $mesh"
  mpi_train "$n" "${data[@]}" --resume "$dir-resumed" --steps 20 --mesh "$mesh" --layout "$layout" --out "$dir-resumed"
  expect_ok "--resume to 20 on $mesh"
  same_metrics "$dir-whole" "$dir-resumed" || fail "$mesh [$layout]: the resumed run's metrics differ"
  cmp -s "$dir-whole/checkpoint.safetensors" "$dir-resumed/checkpoint.safetensors" \
    || fail "$mesh [$layout]: the checkpoints differ after resume"
}

resume_case 2 data:2 batch:data,experts:data
resume_case 4 data:2,model:2 batch:data,experts:data,d_ff:model,heads:model
echo "ok"
