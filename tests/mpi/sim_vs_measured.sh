#!/usr/bin/env bash
# experiments/bench_sim_mpi's plumbing at a tiny size (calibrate --smoke): calibrate under
# mpiexec -n 2 writes a hardware file with the measured network ([ici] torus [2], no async
# collectives; each collective kind's own α and size curve; the cold-cost curve after the model's
# own ops), every rank writes its trace (trace.json, trace.rank1.json, aligned by
# clock_origin_us), and for dp, ep and model the measured and simulated collectives match node for
# node and every kind gets a row. Two ranks on this host; on two network-namespace hosts too when
# scripts/netns_hosts.sh may create them (root) and no other run is using them (else a message
# says so). The accuracy figures are not checked: timing on a shared machine is a benchmark's
# business (README: bench_sim_mpi).
source "$(dirname "$0")/mpi_fixture.bash"
bin=$1
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# shellcheck source=tests/cli/run_ablation_fixture.bash
source "$root/tests/cli/run_ablation_fixture.bash"
make_corpus "$work/synth"
# Both settings; netns is skipped by the bench where namespaces cannot be made. (Its second orted
# used to crash now and then writing hwloc's shared-memory topology, two daemons on one machine:
# scripts/netns_hosts.sh now launches without Open MPI's hwloc runtime control.)
settings=local,netns
timeout 280 /usr/bin/python3 "$root/experiments/bench_sim_mpi" --build "$(dirname "$bin")" --smoke --steps 2 --reps 1 --settings "$settings" \
  --model "$root/experiments/configs/models/tiny.toml" --set model.vocab="$SY_TEST_VOCAB" --set train.target_length=8 \
  --set train.batch=4 --set moe.group_size=8 --data "$work/synth" --vocab "$SY_TEST_VOCAB" --out "$work/out" \
  >"$work/log.txt" 2>&1 || { cat "$work/log.txt" >&2; fail "bench_sim_mpi exited $?"; }
cat "$work/log.txt"
/usr/bin/python3 - "$work/out" <<'PY' || fail "bench_sim_mpi's results are incomplete"
import json, os, sys
out = sys.argv[1]
r = json.load(open(os.path.join(out, "results.json")))
settings = [s for s in ("local", "netns") if os.path.isdir(os.path.join(out, "rep1", s))]
assert "local" in settings, settings
got = {(x["setting"], x["layout"]) for x in r["rows"]}
assert got == {(s, l) for s in settings for l in ("dp", "ep", "model")}, got
for s in settings:
    hw = open(os.path.join(out, "rep1", s, "host.toml")).read()
    assert "torus = [2]" in hw and "async_collectives = false" in hw and "staged_collectives = true" in hw, s
    for kind in ("all_gather", "all_to_all", "reduce_scatter"):  # each kind's own α and curve
        assert f"[ici.{kind}]" in hw, (s, kind)
    assert "ragged_all_to_all_seconds = [[" in hw, s  # the executor's ragged path, timed whole
    # The paths' cold-cost curve, measured after the model's own ops (calibrate --model).
    assert "latency_after_streaming = [[" in hw, s
    cal = open(os.path.join(out, "rep1", s, "calibrate.log")).read()
    assert "after a segment of the model's step moving" in cal, s
    sim = open(os.path.join(out, "rep1", s, "ep", "sim", "report.md")).read()
    assert "Backing: ragged" in sim, s  # priced as the executor runs: routed rows, the run's loads
for x in r["rows"]:
    where = f"{x['setting']} {x['layout']}"
    assert x["measured_step_s"] > 0 and x["simulated_step_s"] > 0, where
    assert x["matched_collectives"] > 0 and "all_reduce" in x["collectives"], where
    if x["layout"] == "ep":
        assert "all_to_all" in x["collectives"], where
    for k, c in x["collectives"].items():
        assert c["measured_s"] >= 0 and c["wait_s"] >= 0 and c["simulated_s"] > 0 and c["ops"] > 0, (where, k, c)
    run = os.path.join(out, "rep1", x["setting"], x["layout"], "run")
    for t in ("trace.json", "trace.rank1.json"):
        assert "clock_origin_us" in json.load(open(os.path.join(run, t)))["otherData"], (where, t)
assert {(x["setting"], x["layout"]) for x in r["summary"]} == got, r["summary"]
print("ok:", ", ".join(sorted(f"{s} {l}" for s, l in got)))
PY
