#!/usr/bin/env bash
# simulate: --help; one layout writes report.md, ops.csv, summary.json and a valid Chrome
# trace.json, byte-identical on a second run; --sweep writes a ranked sweep.csv marking layouts
# that do not fit; a bad hardware file, a mesh larger than the pod and an illegal layout exit 2
# with a message naming the problem and write nothing.
set -euo pipefail
bin=$1
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
sim="$bin/simulate"

fail() { echo "FAIL: $*" >&2; exit 1; }
expect_in() {  # expect_in FILE TEXT
  grep -qF -- "$2" "$1" || { echo "--- $1:" >&2; cat "$1" >&2; fail "expected '$2' in $1"; }
}
expect_exit2() {  # expect_exit2 TEXT ARGS...: exit code 2, TEXT on stderr, no output directory
  local text=$1; shift
  local code=0
  "$sim" "$@" >"$work/out.txt" 2>"$work/err.txt" || code=$?
  [ "$code" -eq 2 ] || { cat "$work/err.txt" >&2; fail "expected exit 2, got $code for: $*"; }
  expect_in "$work/err.txt" "$text"
  [ ! -e "$work/never" ] || fail "output written despite the error: $*"
}

cat >"$work/model.toml" <<'TOML'
[model]
architecture = "decoder_only"
vocab = 512
d_model = 64
d_ff = 128
heads = 4
d_kv = 16
layers = 2
position_bias = false
[moe]
every = 2
experts = 8
k = 2
policy_train = "all"
cf_train = 1.25
group_size = 256
min_capacity = 1
[train]
batch = 32
length = 64
TOML
model="$work/model.toml"
layout="batch:data,experts:data,d_ff:model,heads:model"

"$sim" --help >"$work/help.txt"
expect_in "$work/help.txt" "--sweep"
expect_in "$work/help.txt" "--layout"

# One layout: the four files.
"$sim" --model "$model" --hardware tpu_v4 --mesh data:4,model:2 --layout "$layout" --out "$work/a" >"$work/out.txt"
expect_in "$work/out.txt" "wrote $work/a/"
for f in report.md ops.csv summary.json trace.json; do [ -s "$work/a/$f" ] || fail "$f missing or empty"; done
expect_in "$work/a/report.md" "## Roofline"
expect_in "$work/a/report.md" "| all-to-all |"
expect_in "$work/a/report.md" "## Memory per device"
expect_in "$work/a/report.md" "## Per layer"
expect_in "$work/a/ops.csv" "index,node,op,scope,phase,stream"
/usr/bin/python3 - "$work/a" <<'PY' || fail "summary.json or trace.json is not what a reader expects"
import json, sys
d = sys.argv[1]
s = json.load(open(d + "/summary.json"))
assert s["step_time_s"] > 0 and s["devices"] == 8 and s["time_split_s"]["all_to_all"] > 0, s
t = json.load(open(d + "/trace.json"))
ev = t["traceEvents"]
names = {e["args"]["name"] for e in ev if e["ph"] == "M" and e["name"] == "thread_name"}
assert names == {"steps", "compute", "ici:data", "ici:model"}, names
assert t["otherData"] == {"schema": "switchyard.trace v1", "source": "simulated"}, t["otherData"]
spans = [e for e in ev if e["ph"] == "X" and e["cat"] != "step"]
assert len(spans) == s["ops"] and all(e["dur"] >= 0 and e["ts"] >= 0 for e in spans)
assert [e["args"]["node"] for e in spans] == list(range(s["ops"])), "one event per node, in program order"
step = [e for e in ev if e["ph"] == "X" and e["cat"] == "step"]
assert len(step) == 1 and step[0]["name"] == "step 1" and abs(step[0]["dur"] - s["step_time_s"] * 1e6) < 1e-3, step
assert max(e["ts"] + e["dur"] for e in spans) <= s["step_time_s"] * 1e6 * (1 + 1e-9) + 1e-3
PY
# Deterministic: a second run gives byte-identical files.
"$sim" --model "$model" --hardware tpu_v4 --mesh data:4,model:2 --layout "$layout" --out "$work/b" >/dev/null
for f in report.md ops.csv summary.json trace.json; do cmp -s "$work/a/$f" "$work/b/$f" || fail "$f differs between runs"; done
ls -A "$work/a" | grep -v '^\.lock$' | grep -qE '^\.|\.tmp\.' && fail "temporary files left in the output directory"  # .lock: the directory lock (docs/conventions.md)

# Sweep: ranked layouts, the ones that do not fit marked (a 1 MB chip fits none but the smallest).
"$sim" --model "$model" --hardware tpu_v4 --mesh data:4,model:2 --sweep --refine 1 --out "$work/s" >"$work/out.txt"
expect_in "$work/out.txt" "legal"
expect_in "$work/s/sweep.csv" "rank,mesh,layout,fits,step_s,simulated_step_s"
head -2 "$work/s/sweep.csv" | tail -1 | grep -qE '^1,"data:4,model:2","[^"]*",yes,' || fail "the best layout should fit: $(head -2 "$work/s/sweep.csv")"
# With HBM for about half of the layouts (the median need), the rest are marked and rank last.
median=$(/usr/bin/python3 -c '
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
print(int(statistics.median(float(r["memory_bytes"]) for r in rows)))' "$work/s/sweep.csv")
sed "s/^hbm_bytes = .*/hbm_bytes = $median/" "$root/simulator/hardware/tpu_v4.toml" >"$work/half_hbm.toml"
"$sim" --model "$model" --hardware "$work/half_hbm.toml" --mesh data:4,model:2 --sweep --refine 0 --out "$work/t" >/dev/null
/usr/bin/python3 - "$work/t/sweep.csv" <<'PY' || fail "sweep.csv must mark misfits and rank fitting layouts first by step time, the rest by memory"
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
fits = [r["fits"] for r in rows]
assert "yes" in fits and "no" in fits, fits
assert fits == sorted(fits, key=lambda f: f == "no"), "a layout that does not fit ranks above one that fits"
steps = [float(r["step_s"]) for r in rows if r["fits"] == "yes"]
assert steps == sorted(steps)
memory = [float(r["memory_bytes"]) for r in rows if r["fits"] == "no"]
assert memory == sorted(memory)
assert [int(r["rank"]) for r in rows] == list(range(1, len(rows) + 1))
PY
# With HBM for none: no layout is called the best; the summary names the smallest.
smallest=$(/usr/bin/python3 -c '
import csv, sys
print(int(min(float(r["memory_bytes"]) for r in csv.DictReader(open(sys.argv[1]))) / 2))' "$work/s/sweep.csv")
sed "s/^hbm_bytes = .*/hbm_bytes = $smallest/" "$root/simulator/hardware/tpu_v4.toml" >"$work/no_hbm.toml"
"$sim" --model "$model" --hardware "$work/no_hbm.toml" --mesh data:4,model:2 --sweep --refine 1 --out "$work/n" >"$work/out.txt"
expect_in "$work/out.txt" "(0 fit,"
expect_in "$work/out.txt" "none fits in"
expect_in "$work/out.txt" "the smallest is"
grep -q "best" "$work/out.txt" && fail "a sweep where nothing fits must not name a best layout: $(cat "$work/out.txt")"

# --sweep-meshes: every factorization of the 8 devices over data and model.
"$sim" --model "$model" --hardware tpu_v4 --mesh data:4,model:2 --sweep --sweep-meshes --refine 0 --out "$work/m" >"$work/out.txt"
expect_in "$work/out.txt" "(4 meshes)"
for m in data:1,model:8 data:2,model:4 data:4,model:2 data:8,model:1; do expect_in "$work/m/sweep.csv" "\"$m\""; done

# --sweep-set: routing settings ranked beside the layouts. Every (settings, layout) pair is a row;
# at one layout, capacity factor 2.0 moves more all-to-all bytes than 1.0 (the capacity buffers
# the all-to-all moves are C = ceil(k·CF·S/E) slots per expert and group).
"$sim" --model "$model" --hardware tpu_v4 --mesh data:4,model:2 --sweep --refine 1 --sweep-dims batch,experts \
  --sweep-set moe.cf_train=1.0,2.0 --sweep-set moe.k=1,2 --out "$work/r" >"$work/out.txt"
expect_in "$work/out.txt" "x 4 settings"
/usr/bin/python3 - "$work/r/sweep.csv" <<'PY' || fail "sweep.csv must rank every (settings, layout) pair"
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
settings = {r["settings"] for r in rows}
want = {f"moe.cf_train={c} moe.k={k}" for c in ("1.0", "2.0") for k in ("1", "2")}
assert settings == want, settings
layouts = {r["layout"] for r in rows}
assert len(rows) == 4 * len(layouts), (len(rows), len(layouts))
ep = {r["settings"]: float(r["all_to_all_bytes"]) for r in rows if r["layout"] == "batch:data,experts:data"}
for k in ("1", "2"):
    lo, hi = ep[f"moe.cf_train=1.0 moe.k={k}"], ep[f"moe.cf_train=2.0 moe.k={k}"]
    assert hi > 1.5 * lo, (k, lo, hi)
steps = [float(r["step_s"]) for r in rows if r["fits"] == "yes"]
assert steps == sorted(steps), "fitting rows ranked by step time"
PY

# Bad input: exit 2, a message naming the problem, nothing written.
for f in negative_bandwidth missing_link_bandwidth unknown_key bad_wraparound not_toml; do
  expect_exit2 "$f.toml" --model "$model" --hardware "$root/tests/data/bad_hw/$f.toml" --mesh data:4 --out "$work/never"
done
expect_exit2 "negative_bandwidth.toml:16: chip.hbm_bandwidth = -1200000000000.0: allowed: > 0" \
  --model "$model" --hardware "$root/tests/data/bad_hw/negative_bandwidth.toml" --mesh data:4 --out "$work/never"
expect_exit2 "unknown_key.toml:21: unknown key ici.hop_latancy; allowed keys in [ici]: link_bandwidth, hop_latency" \
  --model "$model" --hardware "$root/tests/data/bad_hw/unknown_key.toml" --mesh data:4 --out "$work/never"
expect_exit2 "hardware 'tpu_v9': cannot read" --model "$model" --hardware tpu_v9 --mesh data:4 --out "$work/never"
expect_exit2 "mesh 'data:64,model:16' has 1024 devices, more than the pod: a tpu_v5e pod has 256 devices" \
  --model "$model" --hardware tpu_v5e --mesh data:64,model:16 --layout batch:data --out "$work/never"
expect_exit2 "both map to mesh axis 'model' (rules d_ff:model and d_model:model; a mesh axis splits at most one dim of a tensor)" \
  --model "$model" --hardware tpu_v4 --mesh data:4,model:2 --layout batch:data,d_model:model,d_ff:model --out "$work/never"
expect_exit2 "dim 'batch' has size 32, which mesh axis 'data' of size 64 does not divide" \
  --model "$model" --hardware tpu_v4 --mesh data:64 --layout batch:data --out "$work/never"
expect_exit2 "names mesh axis 'pipe', which mesh 'data:4' does not have" \
  --model "$model" --hardware tpu_v4 --mesh data:4 --layout batch:pipe --out "$work/never"
expect_exit2 "mesh 'data:0': axis 'data' has size '0'" --model "$model" --hardware tpu_v4 --mesh data:0 --out "$work/never"
echo "simulate: all checks passed"
