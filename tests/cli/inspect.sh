#!/usr/bin/env bash
# inspect: counts for the shipped MLP, --dot drawings (SVG and DOT), --json, --help, and bad
# graphs (missing file, malformed JSON, bad id, cycle, shape mismatch): exit 2, a message naming
# the file and the node on stderr, and no --dot output left behind.
set -euo pipefail
bin=$1
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
inspect="$bin/inspect"
mlp="$root/experiments/graphs/mlp.json"

fail() { echo "FAIL: $*" >&2; exit 1; }
expect_in() {  # expect_in FILE TEXT
  grep -qF -- "$2" "$1" || { echo "--- $1:" >&2; cat "$1" >&2; fail "expected '$2' in $1"; }
}

# Counts for the MLP: x [4, 8] -> w1 [8, 16] -> relu -> w2 [16, 8]; 256 parameters.
"$inspect" "$mlp" >"$work/out.txt"
expect_in "$work/out.txt" "nodes "
expect_in "$work/out.txt" "values "
expect_in "$work/out.txt" "parameters     256"
expect_in "$work/out.txt" "forward FLOPs  "
# The ffn scope's forward FLOPs: two matmuls of 2*4*8*16 = 1024 each, plus the relu's few.
grep -qE '^ffn +[0-9]+ +256 +2[0-9]{3} ' "$work/out.txt" || fail "ffn scope row missing or wrong: $(cat "$work/out.txt")"

# --json gives the same counts, machine-readable.
"$inspect" "$mlp" --json >"$work/out.json"
/usr/bin/python3 - "$work/out.json" <<'EOF' || fail "--json output is not the expected JSON"
import json, sys
c = json.load(open(sys.argv[1]))
assert c["parameters"] == 256, c
assert c["nodes"] == c["forward_nodes"] + c["backward_nodes"], c
assert c["forward_flops"] > 0 and c["total_flops"] >= c["forward_flops"], c
EOF

# --dot out.svg: a Graphviz SVG with a node group per op and leaf; --dot out.dot: DOT text.
"$inspect" "$mlp" --dot "$work/g.svg" >/dev/null
head -c 5 "$work/g.svg" | grep -q '<?xml' || fail "g.svg does not start with <?xml"
expect_in "$work/g.svg" "<svg"
expect_in "$work/g.svg" 'class="node"'
expect_in "$work/g.svg" 'class="cluster"'
# Well-formed XML with one node group per op and per leaf (inputs + parameter tensors).
/usr/bin/python3 - "$work/g.svg" "$work/out.json" <<'EOF' || fail "g.svg is not well-formed SVG with one node group per op and leaf"
import json, sys, xml.etree.ElementTree as ET
svg = ET.parse(sys.argv[1]).getroot()
assert svg.tag.endswith("svg"), svg.tag
groups = [g for g in svg.iter("{http://www.w3.org/2000/svg}g") if g.get("class") == "node"]
c = json.load(open(sys.argv[2]))
assert len(groups) == c["nodes"] + c["inputs"] + c["parameter_tensors"], (len(groups), c)
EOF
! compgen -G "$work/g.svg.tmp*" >/dev/null || fail "a temporary g.svg.tmp* left behind"
"$inspect" "$mlp" --dot "$work/g.dot" >/dev/null
head -n 1 "$work/g.dot" | grep -q '^digraph switchyard {' || fail "g.dot is not DOT text"
expect_in "$work/g.dot" "subgraph cluster_"

# --help exits 0 and describes the options.
"$inspect" --help >"$work/help.txt"
expect_in "$work/help.txt" "--dot"

# Bad input: exit 2, message on stderr naming the file and the problem, nothing written.
expect_bad() {  # expect_bad GRAPH TEXT...
  local graph=$1
  shift
  local rc=0
  "$inspect" "$graph" --dot "$work/bad.svg" >"$work/stdout.txt" 2>"$work/stderr.txt" || rc=$?
  [ "$rc" -eq 2 ] || fail "inspect $graph: exit code $rc, expected 2 (stderr: $(cat "$work/stderr.txt"))"
  [ ! -e "$work/bad.svg" ] || fail "inspect $graph: --dot output was written for a bad graph"
  ! compgen -G "$work/bad.svg.tmp*" >/dev/null || fail "inspect $graph: --dot temporary file left behind"
  expect_in "$work/stderr.txt" "$graph"
  for text in "$@"; do expect_in "$work/stderr.txt" "$text"; done
}
data="$root/tests/data"
expect_bad "$work/missing.json" "cannot open"
expect_bad "$data/graph_malformed.json" "not valid JSON" "line 14"
expect_bad "$data/graph_bad_id.json" "node 1 (relu @ ffn)" "input 0 is value 42, which does not exist"
expect_bad "$data/graph_cycle.json" "cycle" "node 0 (einsum @ ffn) -> node 1 (relu @ ffn) -> node 0 (einsum @ ffn)"
expect_bad "$data/graph_shape_mismatch.json" "node 2 (einsum @ ffn)" "dim 'd_ff' has size 16"

# A --dot name that is neither .svg nor .dot is bad input too.
rc=0
"$inspect" "$mlp" --dot "$work/g.png" >/dev/null 2>"$work/stderr.txt" || rc=$?
[ "$rc" -eq 2 ] || fail "--dot g.png: exit code $rc, expected 2"
expect_in "$work/stderr.txt" ".svg"
[ ! -e "$work/g.png" ] || fail "--dot g.png was written"

echo "inspect: all checks passed"
