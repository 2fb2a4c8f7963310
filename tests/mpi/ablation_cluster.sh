#!/usr/bin/env bash
# run_ablation --scale cluster (issue #18): the stability spec's cluster preset, shrunk to the tiny
# model on the synthetic corpus, runs one arm (one seed) across 2 MPI ranks. Checks that every arm
# is priced on the calibrated hardware file before the first run starts (the table and the
# expected wall time come before any run's line), that the run trained on the mesh (mpiexec -n 2:
# train says so) and finished, and that results.csv carries the priced step.
set -euo pipefail
bin=$1
root=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=tests/mpi/mpi_fixture.bash
source "$root/tests/mpi/mpi_fixture.bash"
work=$(mktemp -d)
trap "rm -rf $work" EXIT
# shellcheck source=tests/cli/run_ablation_fixture.bash
source "$root/tests/cli/run_ablation_fixture.bash"
make_corpus "$work/synth"

# The spec as shipped, with its [scale.cluster] shrunk: the tiny model, 4 steps, the test
# vocabulary, and the baseline arm's seeds cut to one. Model paths become absolute.
/usr/bin/python3 - "$root/experiments/ablations/stability.toml" "$work/spec.toml" "$root" "$SY_TEST_VOCAB" <<'PY'
import re, sys
src, dst, root, vocab = sys.argv[1:]
text = open(src).read().replace('"../configs/', f'"{root}/experiments/configs/')
head, rest = text.split("[scale.cluster]\n", 1)
table, tail = rest.split("\n\n", 1)
lines = []
for line in table.splitlines():
    key = line.split("=")[0].strip()
    if key == "model":
        line = f'model = "{root}/experiments/configs/models/tiny.toml"'
    elif key == "steps":
        line = "steps = 4"
    elif key in ("eval_every", "checkpoint_every"):
        line = f"{key} = 2"
    elif key == "set":
        line = ('set = { "model.vocab" = %s, "train.target_length" = 8, "train.batch" = 4, "moe.group_size" = 8, '
                '"train.precision" = "bf16", "moe.router_dtype" = "bf16", "train.eval_batches" = 1 }' % vocab)
    lines.append(line)
lines.append(f"vocab = {vocab}")
tail = re.sub(r'(name = "baseline"\n)seeds = 6', r"\1seeds = 1", tail, count=1)
open(dst, "w").write(head + "[scale.cluster]\n" + "\n".join(lines) + "\n\n" + tail)
PY
grep -q '^mesh = "data:8"' "$work/spec.toml" || fail "the cluster preset no longer gives mesh = \"data:8\" (update this test)"

timeout 120 mpiexec -n 2 "$bin/calibrate" --smoke --threads 1 --out "$work/host.toml" >"$work/calibrate.log" 2>&1 \
  || { cat "$work/calibrate.log" >&2; fail "mpiexec -n 2 calibrate --smoke failed"; }

rc=0
timeout 600 "$bin/run_ablation" "$work/spec.toml" --scale cluster --mpi 2 --arm baseline --hardware "$work/host.toml" \
  --data "$work/synth" --out "$work/sweep" >"$work/out.txt" 2>"$work/err.txt" || rc=$?
[ "$rc" = 0 ] || { cat "$work/err.txt" "$work/out.txt" >&2; fail "run_ablation --scale cluster --mpi 2 exited $rc"; }

/usr/bin/python3 - "$work/err.txt" "$work/sweep" <<'PY'
import csv, json, os, sys
err, sweep = open(sys.argv[1]).read().splitlines(), sys.argv[2]
def first(pred, what):
    for i, l in enumerate(err):
        if pred(l):
            return i
    sys.exit(f"run_ablation's stderr has no {what}:\n" + "\n".join(err))
priced = first(lambda l: l.startswith("priced on ") and "mesh data:2" in l, "'priced on ... mesh data:2' line")
wall = first(lambda l: l.startswith("expected wall time: "), "expected wall time")
row = first(lambda l: l.strip().startswith("baseline ") and l.rstrip().endswith(("s", "m")), "priced row for baseline")
started = first(lambda l: "2 MPI ranks (mesh data:2)" in l, "start line naming the 2 ranks")
done = first(lambda l: l.startswith("[1/1] baseline seed 1: ok"), "finished run")
if not priced < row < wall < started < done:
    sys.exit(f"order: priced {priced}, row {row}, wall {wall}, start {started}, done {done}")
rows = list(csv.DictReader(open(os.path.join(sweep, "results.csv"))))
if [r["arm"] for r in rows] != ["baseline"] or rows[0]["status"] != "ok":
    sys.exit(f"results.csv: {rows}")
step = float(rows[0]["priced_step_seconds"])
if not step > 0:
    sys.exit(f"priced_step_seconds {step}")
run = os.path.join(sweep, "runs", "baseline", "seed_1")
log = open(os.path.join(run, "train.log")).read()
if "train: 2 MPI ranks, mesh data:2, layout batch:data,experts:data" not in log:
    sys.exit("train.log does not show a mesh run:\n" + log[-2000:])
if json.load(open(os.path.join(run, "status.json")))["status"] != "completed":
    sys.exit("status.json is not completed")
if json.load(open(os.path.join(run, "run.json"))).get("mesh") != "data:2":
    sys.exit("run.json does not record the mesh")
PY
echo "ablation_cluster: ok ($(grep '^expected wall time' "$work/err.txt"))"
