#!/usr/bin/env bash
# inspect MODEL.toml: the published totals, --set overrides, --json, and exit 2 on a bad config.
set -euo pipefail
bin=$1
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
models=$root/experiments/configs/models

out=$("$bin/inspect" "$models/st_moe_32b.toml")
grep -q "parameters: 269.1B total" <<< "$out" || { echo "st_moe_32b: expected 269.1B parameters"; echo "$out"; exit 1; }
grep -qE "published convention +20\.[12][0-9]T" <<< "$out" || { echo "st_moe_32b: expected ~20.2T forward FLOPs"; exit 1; }

# --json parses and --set changes the capacity factor (more capacity, more dispatch FLOPs).
"$bin/inspect" "$models/small.toml" --json > "$work/a.json"
"$bin/inspect" "$models/small.toml" --json --set moe.cf_train=2.0 > "$work/b.json"
/usr/bin/python3 - "$work/a.json" "$work/b.json" <<'PY'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
fa = a["graph_forward_flops_per_sequence"] if "graph_forward_flops_per_sequence" in a else None
assert a != b, "--set moe.cf_train=2.0 changed nothing"
PY

# A bad key exits 2 naming the file and key; nothing on stdout.
cp "$models/tiny.toml" "$work/bad.toml"
printf '\n[moe]\nrouter = "magic"\n' >> "$work/bad.toml"
set +e
"$bin/inspect" "$work/bad.toml" > "$work/out.txt" 2> "$work/err.txt"
rc=$?
set -e
[ "$rc" -eq 2 ] || { echo "bad config: expected exit 2, got $rc"; cat "$work/err.txt"; exit 1; }
grep -q "bad.toml" "$work/err.txt" || { echo "error does not name the file"; cat "$work/err.txt"; exit 1; }
[ ! -s "$work/out.txt" ] || { echo "bad config printed output"; exit 1; }
echo "inspect_model: ok"
