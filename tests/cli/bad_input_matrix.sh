#!/usr/bin/env bash
# The bad-input matrix: every case of tests/cli/bad_input/cases.txt (over 150, across every tool:
# command lines, --set values, config files, meshes and layouts, hardware files, checkpoints,
# data, output paths) must exit 2 (never 1, never a signal), print one line on stderr naming the
# file/key/value, and write nothing (the whole fixture tree is compared before and after).
# No case trains: the one training run here makes the checkpoint fixtures (2 steps of tiny).
# Usage: bad_input_matrix.sh BIN_DIR [GREP] (GREP: run only the matching cases).
set -uo pipefail
bin=$(cd "$1" && pwd)
only=${2:-}
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
W="$work/w"
mkdir -p "$W/cwd" "$W/dir" "$W/ck"
fail() { echo "FAIL: $*" >&2; exit 1; }

# ---- fixtures ----
# shellcheck source=tests/cli/run_ablation_fixture.bash
source "$root/tests/cli/run_ablation_fixture.bash"
make_corpus "$W/synth"
# The tiny model config with the synthetic corpus's vocabulary and span-corruption targets.
tiny="$W/tiny.toml"
sed -e 's/^vocab = .*/vocab = 160/' -e 's/^target_length = .*/target_length = 8/' "$root/experiments/configs/models/tiny.toml" >"$tiny"
echo "precious" >"$W/file"
printf '[model\nvocab = 3\n' >"$W/syntax.toml"
printf '[bogus]\nx = 1\n' >"$W/unknown_section.toml"
: >"$W/empty.toml"
printf '# a model config with nothing in it\n\n' >"$W/comments.toml"
printf '[train]\nbatch = 2\n' >"$W/train_only.toml"
{ printf 'x = '; printf '[%.0s' $(seq 1 5000); printf ']%.0s' $(seq 1 5000); echo; } >"$W/nested.toml"
{ printf '{"nodes": '; head -c 100000 /dev/zero | tr '\0' '['; echo; } >"$W/deep.json"
echo '{"nodes": [' >"$W/broken.json"
echo '{"nodes": 5, "values": "x"}' >"$W/wrong_types.json"
mkdir "$W/dir.json"
v4="$root/simulator/hardware/tpu_v4.toml"
grep -v '^hbm_bandwidth' "$v4" >"$W/hw_missing.toml"
sed 's/^hbm_bandwidth = .*/hbm_bandwidth = -1.2e12/' "$v4" >"$W/hw_negative.toml"
sed 's/^matmul_flops_bf16 = .*/matmul_flops_bf16 = inf/' "$v4" >"$W/hw_inf.toml"
sed 's/^vector_flops = .*/vector_flops = nan/' "$v4" >"$W/hw_nan.toml"
sed 's/^\[ici\]/[ici/' "$v4" >"$W/hw_syntax.toml"
sed 's/^\[ici\]/bogus_key = 1\n[ici]/' "$v4" >"$W/hw_unknown.toml"
sed 's/^hbm_bytes = .*/hbm_bytes = "lots"/' "$v4" >"$W/hw_string.toml"
: >"$W/hw_empty.toml"
sed 's/^op_overhead = .*/op_overhead = 0.0\nmemory_reserve = 1e300/' "$v4" >"$W/hw_reserve.toml"
sed 's/^compute = \[\[1e6, 0.05\]/compute = [[1e6, nan]/' "$v4" >"$W/hw_eff.toml"
write_spec "$W/sweep.toml" 2
write_spec "$W/bad_spec.toml" 2 "bogus_sweep_key = 1"
write_spec "$W/sim_sweep.toml" 2 "simulate_model = \"$root/experiments/configs/models/tiny.toml\""
write_spec "$W/mesh_sweep.toml" 2 'mesh = "data:0"'
write_spec "$W/layout_sweep.toml" 2 'layout = "batch:data"'
mkdir "$W/other_sweep"
echo '{"name": "another_sweep", "scale": ""}' >"$W/other_sweep/sweep.json"
mkdir "$W/task_bad"
printf 'no tab here\n' >"$W/task_bad/train.tsv"
printf 'no tab here\n' >"$W/task_bad/validation.tsv"
# Checkpoints: a good 2-step run and damaged copies of it.
"$bin/train" --model "$tiny" --data "$W/synth" --vocab 160 \
  --threads 1 --steps 2 --out "$W/ck/good" >"$work/train.log" 2>&1 || { cat "$work/train.log" >&2; fail "the fixture run failed"; }
ck=checkpoint.safetensors
for d in truncated garbage empty huge_header step_edited data_flipped ckpt_is_dir config_corrupt no_checkpoint; do
  cp -a "$W/ck/good" "$W/ck/$d"
done
size=$(stat -c %s "$W/ck/good/$ck")
head -c $((size / 2)) "$W/ck/good/$ck" >"$W/ck/truncated/$ck"
head -c 4096 /dev/urandom >"$W/ck/garbage/$ck"
: >"$W/ck/empty/$ck"
rm "$W/ck/ckpt_is_dir/$ck" && mkdir "$W/ck/ckpt_is_dir/$ck"
rm "$W/ck/no_checkpoint/$ck"
/usr/bin/python3 - "$W/ck" <<'PY' || fail "making the damaged checkpoints"
import json, sys
d = sys.argv[1]
ck = "checkpoint.safetensors"
def load(p):
    b = open(p, "rb").read()
    n = int.from_bytes(b[:8], "little")
    return b, n
def save_header(p, h, data):
    t = json.dumps(h, separators=(",", ":")).encode()
    t += b" " * ((8 - len(t) % 8) % 8)
    open(p, "wb").write(len(t).to_bytes(8, "little") + t + data)
b, n = load(f"{d}/good/{ck}")
open(f"{d}/huge_header/{ck}", "wb").write(b"\xff" * 8 + b[8:])
e = bytearray(b)
i = e.find(b'"step":"2"', 8, 8 + n)
assert i > 0
e[i + 8] = ord("3")
open(f"{d}/step_edited/{ck}", "wb").write(bytes(e))
f = bytearray(b)
f[-1] ^= 0x01
open(f"{d}/data_flipped/{ck}", "wb").write(bytes(f))
h = json.loads(b[8:8 + n])  # an older checkpoint (no header checksum) whose config is not JSON
del h["__metadata__"]["header_checksum"]
h["__metadata__"]["config"] = "{not json"
save_header(f"{d}/config_corrupt/{ck}", h, b[8 + n:])
PY

snapshot() { find "$W" -printf '%P %y %s %T@\n' | sort; }

# ---- the cases ----
common="--data $W/synth --vocab 160 --threads 1"
n=0 failed=0
while IFS= read -r line; do
  [[ -z "$line" || "$line" == \#* ]] && continue
  [[ -n "$only" && "$line" != *"$only"* ]] && continue
  n=$((n + 1))
  cmd=${line%% => *}
  want=${line#* => }
  out="$W/out_$n"
  subst() {
    local s=$1
    s=${s//@TINY@/$tiny}; s=${s//@COMMON@/$common}; s=${s//@DATA@/$W/synth}; s=${s//@W@/$W}
    s=${s//@FILE@/$W/file}; s=${s//@DIR@/$W/dir}; s=${s//@OUT@/$out}; s=${s//@CK@/$W/ck}; s=${s//@ROOT@/$root}
    printf '%s' "$s"
  }
  cmd=$(subst "$cmd")
  want=$(subst "$want")
  read -r -a argv <<<"$cmd"
  before=$(snapshot)
  rc=0
  (cd "$W/cwd" && SWITCHYARD_DATA="$W/synth" timeout 60 "$bin/${argv[0]}" "${argv[@]:1}") >"$work/out.txt" 2>"$work/err.txt" || rc=$?
  problem=""
  if [ "$rc" -ne 2 ]; then
    problem="exit code $rc, expected 2"
  elif [ "$(wc -l <"$work/err.txt")" -ne 1 ]; then
    problem="stderr has $(wc -l <"$work/err.txt") lines, expected 1"
  elif ! grep -qF -- "$want" "$work/err.txt"; then
    problem="stderr does not name '$want'"
  elif [ "$before" != "$(snapshot)" ]; then
    problem="files changed: $(diff <(echo "$before") <(snapshot) | grep '^[<>]' | head -3 | tr '\n' ' ')"
  fi
  if [ -n "$problem" ]; then
    failed=$((failed + 1))
    echo "FAIL case $n: $cmd"
    echo "  $problem; stderr: $(head -c 400 "$work/err.txt" | tr '\n' '|')"
    rm -rf "$out" "$out".*
  fi
done <"$root/tests/cli/bad_input/cases.txt"
[ -z "$only" ] && [ "$n" -lt 150 ] && fail "only $n cases (the matrix promises at least 150)"
[ "$failed" -eq 0 ] || fail "$failed of $n bad-input cases failed"
echo "bad_input_matrix: $n cases ok"
