#!/usr/bin/env bash
# One trace schema on a mesh: step 2 of `train` on data:2 (batch and experts split; rank 0 writes
# its device's trace) and `simulate` of the same config, mesh and layout name the same ops: the
# same (node id, op name, scope) set, flops and bytes per node (scripts/trace_diff.py --check),
# and the collectives with the same names, axes and collective_bytes.
source "$(dirname "$0")/mpi_fixture.bash"
mpi_setup "$1"
layout=batch:data,experts:data
mpi_train 2 "${model[@]}" "${data[@]}" --steps 2 --trace 2 --mesh data:2 --layout "$layout" --out "$work/run"
expect_ok "2 steps on data:2 with --trace 2"
"$bin/simulate" "${model[@]}" --hardware tpu_v4 --mesh data:2 --layout "$layout" --no-fusion --out "$work/sim" >"$work/log.txt" 2>&1 \
  || { cat "$work/log.txt" >&2; fail "simulate on data:2"; }
/usr/bin/python3 "$root/scripts/trace_diff.py" "$work/run/trace.json" "$work/sim/trace.json" --check >"$work/diff.txt" \
  || { cat "$work/diff.txt" >&2; fail "trace_diff --check: the measured and simulated programs differ"; }
/usr/bin/python3 - "$work/run/trace.json" "$work/sim/trace.json" <<'PY' || fail "collectives differ between the traces"
import json, sys
def collectives(path):
    t = json.load(open(path))
    return sorted((e["args"]["node"], e["name"], e["args"]["axes"], e["args"]["collective_bytes"])
                  for e in t["traceEvents"] if e["ph"] == "X" and "axes" in e.get("args", {}))
m, s = collectives(sys.argv[1]), collectives(sys.argv[2])
assert m == s and {c[1] for c in m} >= {"all_to_all", "all_reduce"}, (m[:5], s[:5])
PY
echo "ok"
