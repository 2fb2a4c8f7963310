#!/usr/bin/env bash
# Write safety of the tools' output directories (docs/conventions.md, "Atomic writes" and "Output
# directories"):
#   - full disk: `train --resume` on a full tmpfs (a small one, filled up) must exit 2 naming
#     the file, and leave metrics.jsonl and status.json byte-identical; with space again the same
#     resume works. Needs `mount -t tmpfs` (root); skipped with a message where it is not permitted.
#   - two writers on one directory: tests/cli/two_writers.sh (train, simulate, run_ablation).
#   - --out naming an existing file, a path under a file, or a path that cannot be created: exit 2
#     with the path (train, simulate, run_ablation, prepare_data), never an uncaught exception.
#   - run_ablation over another sweep's directory: exit 2, its sweep.json untouched.
set -euo pipefail
bin=$1
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
mounted=""
cleanup() {
  [ -n "$mounted" ] && umount "$mounted" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
train="$bin/train"

fail() { echo "FAIL: $*" >&2; exit 1; }
expect_in() {  # expect_in FILE TEXT
  grep -qF -- "$2" "$1" || { echo "--- $1:" >&2; cat "$1" >&2; fail "expected '$2' in $1"; }
}
expect_exit() {  # expect_exit CODE TOOL ARGS...: stdout/stderr to $work/{out,err}.txt
  local code=$1 tool=$2 rc=0
  shift 2
  "$bin/$tool" "$@" >"$work/out.txt" 2>"$work/err.txt" || rc=$?
  [ "$rc" -eq "$code" ] || { cat "$work/out.txt" "$work/err.txt" >&2; fail "$tool $*: exit code $rc, expected $code"; }
  if [ "$code" -eq 2 ]; then
    [ "$(wc -l <"$work/err.txt")" -eq 1 ] || { cat "$work/err.txt" >&2; fail "$tool $*: stderr is not one line"; }
  fi
}

# shellcheck source=tests/cli/run_ablation_fixture.bash
source "$root/tests/cli/run_ablation_fixture.bash"
synth="$work/synth"
make_corpus "$synth"
tiny="$root/experiments/configs/models/tiny.toml"
common=(--data "$synth" --vocab 160 --threads 1)
model=(--model "$tiny" --set model.vocab=160 --set train.target_length=8)

# ---- full disk: resume on a full tmpfs keeps metrics.jsonl and status.json ----
expect_exit 0 train "${model[@]}" "${common[@]}" --steps 4 --out "$work/r"
# As if killed after step 5's metrics line but before its checkpoint: resume must drop that line,
# i.e. rewrite metrics.jsonl, which is what fails on the full disk.
sed -n 4p "$work/r/metrics.jsonl" | sed 's/"step":4/"step":5/' >>"$work/r/metrics.jsonl"
mkdir "$work/disk"
kib=$(( 2 * $(du -sk "$work/r" | cut -f1) + 64 ))  # room for a new checkpoint beside the old once the filler is gone
if mount -t tmpfs -o "size=${kib}k" tmpfs "$work/disk" 2>"$work/mount.err"; then
  mounted="$work/disk"
  cp -a "$work/r" "$work/disk/r"
  dd if=/dev/zero of="$work/disk/fill" bs=4k 2>/dev/null || true  # until the disk is full
  before=$(md5sum "$work/disk/r/metrics.jsonl" "$work/disk/r/status.json" "$work/disk/r/checkpoint.safetensors")
  expect_exit 2 train --resume "$work/disk/r" "${common[@]}" --steps 8 --out "$work/disk/r"
  expect_in "$work/err.txt" "$work/disk/r/metrics.jsonl"
  expect_in "$work/err.txt" "No space left on device"
  [ "$before" = "$(md5sum "$work/disk/r/metrics.jsonl" "$work/disk/r/status.json" "$work/disk/r/checkpoint.safetensors")" ] ||
    fail "a resume on a full disk changed metrics.jsonl, status.json or the checkpoint"
  ls -a "$work/disk/r" | grep -q '\.tmp\.' && fail "a temporary file was left behind on the full disk"
  # A second try on the still-full disk fails the same way and still leaves status.json whole.
  "$train" --resume "$work/disk/r" "${common[@]}" --steps 8 --out "$work/disk/r" >/dev/null 2>"$work/err.txt" || true
  [ -s "$work/disk/r/status.json" ] || fail "status.json is empty after a failed write"
  rm "$work/disk/fill"
  expect_exit 0 train --resume "$work/disk/r" "${common[@]}" --steps 8 --out "$work/disk/r"
  [ "$(wc -l <"$work/disk/r/metrics.jsonl")" -eq 8 ] || fail "after the resume with space: $(wc -l <"$work/disk/r/metrics.jsonl") metrics lines, expected 8"
  expect_in "$work/disk/r/status.json" '"completed"'
  umount "$work/disk"
  mounted=""
else
  echo "SKIP full-disk checks: mount -t tmpfs not permitted here ($(head -1 "$work/mount.err"))"
fi

# ---- checkpoint header checksum: one edited byte of the step is refused; a header without the
# checksum (older checkpoints) still loads ----
cp -a "$work/r" "$work/edited"
rm "$work/edited/.lock"
/usr/bin/python3 - "$work/edited/checkpoint.safetensors" <<'PY'
import sys
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
n = int.from_bytes(b[:8], "little")
i = b.find(b'"step":"4"', 8, 8 + n)
assert i > 0, "no step in the header"
b[i + 8] = ord("5")
open(p, "wb").write(bytes(b))
PY
before=$(md5sum "$work/edited/checkpoint.safetensors" "$work/edited/metrics.jsonl")
expect_exit 2 train --resume "$work/edited" "${common[@]}" --steps 5 --out "$work/edited"
expect_in "$work/err.txt" "header checksum"
expect_in "$work/err.txt" "$work/edited/checkpoint.safetensors"
[ "$before" = "$(md5sum "$work/edited/checkpoint.safetensors" "$work/edited/metrics.jsonl")" ] || fail "a refused resume changed its directory"
[ ! -e "$work/edited/.lock" ] || fail "a refused resume created the lock file (the directory is opened only after all input is valid)"
cp -a "$work/r" "$work/old"
/usr/bin/python3 - "$work/old/checkpoint.safetensors" <<'PY'
import json, sys
p = sys.argv[1]
b = open(p, "rb").read()
n = int.from_bytes(b[:8], "little")
h = json.loads(b[8:8 + n])
del h["__metadata__"]["header_checksum"]
t = json.dumps(h, separators=(",", ":")).encode()
t += b" " * ((8 - len(t) % 8) % 8)
open(p, "wb").write(len(t).to_bytes(8, "little") + t + b[8 + n:])
PY
expect_exit 0 train --resume "$work/old" "${common[@]}" --steps 5 --out "$work/old"
expect_in "$work/old/status.json" '"completed"'

# ---- --out that is a file, under a file, or cannot be created ----
echo "precious" >"$work/file"
for out in "$work/file" "$work/file/sub" /proc/self/no_such_dir; do
  expect_exit 2 train "${model[@]}" "${common[@]}" --steps 1 --out "$out"
  expect_in "$work/err.txt" "--out $out"
  expect_exit 2 simulate --model "$tiny" --hardware tpu_v4 --mesh data:2 --layout batch:data --out "$out"
  expect_in "$work/err.txt" "--out $out"
  expect_exit 2 simulate --model "$tiny" --hardware tpu_v4 --mesh data:2 --sweep --out "$out"
  expect_in "$work/err.txt" "--out $out"
done
[ "$(cat "$work/file")" = "precious" ] || fail "a tool overwrote the file named by --out"
expect_exit 2 prepare_data --data "$work/file" --synthetic 3 --vocab 160
expect_in "$work/err.txt" "$work/file"

# ---- run_ablation over another sweep ----
write_spec "$work/sweep.toml" 2
mkdir "$work/other"
echo '{"name": "another_sweep", "scale": ""}' >"$work/other/sweep.json"
cp "$work/other/sweep.json" "$work/other.json"
expect_exit 2 run_ablation "$work/sweep.toml" --data "$synth" --out "$work/other"
expect_in "$work/err.txt" "holds another sweep"
expect_in "$work/err.txt" "another_sweep"
cmp -s "$work/other/sweep.json" "$work/other.json" || fail "run_ablation changed another sweep's sweep.json"
[ "$(ls -A "$work/other")" = "sweep.json" ] || fail "run_ablation wrote into another sweep's directory: $(ls -A "$work/other")"
expect_exit 2 run_ablation "$work/sweep.toml" --data "$synth" --out "$work/file"
expect_in "$work/err.txt" "$work/file"
echo "write_safety: ok"
