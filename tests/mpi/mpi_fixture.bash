# Shared by tests/mpi/*.sh (sourced; not a test itself): the tiny MoE model on a synthetic
# Brown-format corpus (no network, tokenizer trained in well under a second), mpiexec with the
# settings this machine needs, and the comparison of a mesh run's metrics with the
# single-process run's.
#   mpi_setup BIN           work dir, corpus, the single-process reference of 20 steps
#   mpi_train N ARGS...     mpiexec -n N train ARGS (stdout/stderr to $work/log.txt); exit code in $rc
#   single_reference NAME SETTINGS...  another single-process reference, with --set SETTINGS
#   mesh_case N MESH LAYOUT  a 20-step mesh run matches the reference
#   same_run A B [N]        N (default 20) steps of A/metrics.jsonl and B/metrics.jsonl: loss, cross-entropy
#                           and gradient norm within 1e-5 relative, expert_load of every MoE
#                           layer equal exactly; the final evaluation in status.json alike
set -euo pipefail

# Open MPI refuses root without these; more ranks than cores need --oversubscribe (mpi_train
# passes it).
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# Loopback only (no probing of other interfaces).
export OMPI_MCA_btl_tcp_if_include=lo OMPI_MCA_oob_tcp_if_include=lo

fail() { echo "FAIL: $*" >&2; exit 1; }

mpi_setup() {
  bin=$1
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  train="$bin/train"
  # A small corpus in Brown format: 30 documents, two per genre (tests/cli/run_ablation_fixture.bash).
  local synth="$work/synth"
  # shellcheck source=tests/cli/run_ablation_fixture.bash
  source "$root/tests/cli/run_ablation_fixture.bash"
  make_corpus "$synth"
  # tiny (encoder-decoder, 4 experts, top-2, no dropout) with a global batch of 4 in routing
  # groups of 8 tokens (4 groups per stack: they split over 2 or 4 devices), AdamW (Adafactor on a
  # mesh: mesh_step.sh and resume_mesh.sh).
  data=(--data "$synth" --vocab "$SY_TEST_VOCAB" --threads 1)
  model=(--model "$root/experiments/configs/models/tiny.toml" --set model.vocab="$SY_TEST_VOCAB" --set train.target_length=8
         --set train.batch=4 --set moe.group_size=8 --set train.optimizer=adamw)
  "$train" "${model[@]}" "${data[@]}" --steps 20 --out "$work/single" >"$work/log.txt" 2>&1 \
    || { cat "$work/log.txt" >&2; fail "the single-process run failed"; }
}

mpi_train() {  # mpi_train N ARGS...
  local n=$1
  shift
  rc=0
  timeout "${SY_MPI_TIMEOUT:-120}" mpiexec -n "$n" --oversubscribe "$train" "$@" >"$work/log.txt" 2>&1 || rc=$?
}

expect_ok() {  # expect_ok WHAT: the last mpi_train exited 0
  [ "$rc" -eq 0 ] || { cat "$work/log.txt" >&2; fail "$1: exit code $rc"; }
}

same_run() {  # same_run A B [N]
  /usr/bin/python3 - "$1/metrics.jsonl" "$2/metrics.jsonl" "${3:-20}" <<'PY'
import json, sys
a, b = ([json.loads(line) for line in open(p)] for p in sys.argv[1:3])
n = int(sys.argv[3])
if len(a) != n or len(b) != n:
    sys.exit(f"expected {n} steps, got {len(a)} and {len(b)}")
worst = 0.0
for x, y in zip(a, b):
    for k in ("loss", "cross_entropy", "grad_norm"):
        r = abs(x[k] - y[k]) / max(abs(x[k]), 1e-30)
        worst = max(worst, r)
        if r > 1e-5:
            sys.exit(f"step {x['step']}: {k} {x[k]} (single process) vs {y[k]} (mesh), relative difference {r:.2e}")
    if not x.get("moe"):
        sys.exit("no MoE metrics in the single-process run")
    for layer, m in x["moe"].items():
        if m["expert_load"] != y["moe"][layer]["expert_load"]:
            sys.exit(f"step {x['step']}: {layer} expert_load {m['expert_load']} vs {y['moe'][layer]['expert_load']}")
# The closing evaluation (status.json) too.
ea, eb = (json.load(open(p.replace("metrics.jsonl", "status.json")))["eval"] for p in sys.argv[1:3])
r = abs(ea["neg_log_perplexity"] - eb["neg_log_perplexity"]) / abs(ea["neg_log_perplexity"])
if r > 1e-5 or ea["accuracy"] != eb["accuracy"]:
    sys.exit(f"final evaluation differs: {ea['neg_log_perplexity']} vs {eb['neg_log_perplexity']}, "
             f"accuracy {ea['accuracy']} vs {eb['accuracy']}")
print(f"  {n} steps match (worst relative difference {worst:.1e}; expert loads equal); so does the evaluation")
PY
}

# mesh_case N MESH LAYOUT: a 20-step run on the mesh matches the single-process run.
# The reference is $reference (default: mpi_setup's single-process run).
mesh_case() {
  local n=$1 mesh=$2 layout=$3 out
  out="$work/run-$(basename "${reference:-single}")-$2-$3"
  echo "mpiexec -n $n train --mesh $mesh --layout $layout"
  mpi_train "$n" "${model[@]}" "${data[@]}" --steps 20 --mesh "$mesh" --layout "$layout" --out "$out"
  expect_ok "--mesh $mesh --layout $layout"
  same_run "${reference:-$work/single}" "$out" || fail "--mesh $mesh --layout $layout differs from the single-process run"
}

# single_reference NAME SETTINGS...: adds the --set SETTINGS to the model, runs the single-process
# reference of 20 steps into $work/NAME and makes it the reference of the following mesh cases.
single_reference() {
  local name=$1
  shift
  for s in "$@"; do model+=(--set "$s"); done
  reference="$work/$name"
  "$train" "${model[@]}" "${data[@]}" --steps 20 --out "$reference" >"$work/log.txt" 2>&1 \
    || { cat "$work/log.txt" >&2; fail "the single-process run ($name) failed"; }
}
