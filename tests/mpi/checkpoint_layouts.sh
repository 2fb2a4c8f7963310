#!/usr/bin/env bash
# Checkpoints are layout-independent: 10 steps saved on data:2, resumed to 20 on data:1 (one
# process) and on data:2,model:2 (4 ranks): both continue as the uninterrupted single-process
# run (losses within 1e-5 relative, expert loads equal), and the saved tensors are global.
source "$(dirname "$0")/mpi_fixture.bash"
mpi_setup "$1"
mpi_train 2 "${model[@]}" "${data[@]}" --steps 10 --mesh data:2 --layout batch:data,experts:data --out "$work/saved"
expect_ok "10 steps on data:2"
/usr/bin/python3 "$root/tests/reference/read_safetensors.py" "$work/saved/checkpoint.safetensors" >"$work/np.txt" \
  || fail "the checkpoint does not read"
grep -qF "decoder/layer_01/moe/experts/wo" "$work/np.txt" || fail "no expert weights in the checkpoint"

cp -r "$work/saved" "$work/one"
rc=0
"$train" "${data[@]}" --resume "$work/one" --steps 20 --mesh data:1 --layout batch:data --out "$work/one" \
  >"$work/log.txt" 2>&1 || rc=$?
expect_ok "resume on data:1"
same_run "$work/single" "$work/one" || fail "resumed on data:1, the run differs from the uninterrupted one"

cp -r "$work/saved" "$work/four"
mpi_train 4 "${data[@]}" --resume "$work/four" --steps 20 --mesh data:2,model:2 \
  --layout batch:data,experts:data,d_ff:model,heads:model --out "$work/four"
expect_ok "resume on data:2,model:2"
same_run "$work/single" "$work/four" || fail "resumed on data:2,model:2, the run differs from the uninterrupted one"
echo "ok"
