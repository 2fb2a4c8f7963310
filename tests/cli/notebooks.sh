#!/usr/bin/env bash
# The notebooks execute headless on a tiny sweep made in this test (synthetic corpus, tiny
# model, a grid over the train capacity factor so every plot of ablation_analysis.ipynb is
# drawn): /usr/bin/python3 -m nbconvert --execute, matplotlib on Agg. A cell that raises fails
# the test; the figures they save must exist.
set -euo pipefail
bin=$1
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# shellcheck source=tests/cli/run_ablation_fixture.bash
source "$root/tests/cli/run_ablation_fixture.bash"
py=/usr/bin/python3

fail() { echo "FAIL: $*" >&2; exit 1; }
if ! "$py" -c "import nbconvert, ipykernel, matplotlib, pandas" 2>/dev/null; then
  [ "${CI:-}" = "true" ] && fail "the notebook packages are missing (scripts/setup.sh installs them)"
  echo "notebooks: skipped: python3-nbconvert, python3-ipykernel, python3-matplotlib or python3-pandas missing (scripts/setup.sh)"
  exit 0
fi

make_corpus "$work/synth"
write_spec "$work/cf.toml" 12 "eval_every = 6" '[[arm]]' 'name = "top-2"' 'grid = { "moe.cf_train" = [1.0, 2.0] }' \
  '[[arm]]' 'name = "top-1"' 'set = { "moe.k" = 1 }' 'grid = { "moe.cf_train" = [1.0, 2.0] }'
"$bin/run_ablation" "$work/cf.toml" --data "$work/synth" --jobs 2 --out "$work/sweep" >"$work/ra.out" 2>&1 ||
  { cat "$work/ra.out" >&2; fail "the tiny sweep"; }

export MPLBACKEND=Agg SWEEP_DIR="$work/sweep" PYDEVD_DISABLE_FILE_VALIDATION=1
for nb in ablation_analysis routing; do
  (cd "$work" && "$py" -Xfrozen_modules=off -m nbconvert --to notebook --execute "$root/notebooks/$nb.ipynb" \
    --ExecutePreprocessor.timeout=300 --output "$work/$nb.out.ipynb") >"$work/$nb.log" 2>&1 ||
    { cat "$work/$nb.log" >&2; fail "$nb.ipynb did not execute"; }
  "$py" - "$work/$nb.out.ipynb" <<'EOF' || fail "$nb.ipynb: a cell failed"
import json, sys
nb = json.load(open(sys.argv[1]))
for cell in nb["cells"]:
    for out in cell.get("outputs", []):
        assert out.get("output_type") != "error", out
EOF
done
for f in loss_curves router_statistics router_numerics capacity expert_load load_imbalance overload_bias pos_specialisation; do
  [ -s "$work/sweep/figures/$f.png" ] || fail "no figure $f.png"
done
grep -q "fraction stable" "$work/ablation_analysis.out.ipynb" || fail "the stability table is not in the executed notebook"
echo "notebooks: all checks passed"
