#!/usr/bin/env bash
# Runs the libFuzzer targets (tests/fuzz/) one after another, each for --time seconds, growing its
# corpus in the repository (tests/fuzz/corpus/<target>/), then minimises that corpus
# (libFuzzer -merge=1: the smallest set of inputs with the same coverage).
#
#   scripts/fuzz.sh [--time SECONDS] [--no-merge] [TARGET...]
#
# TARGET: model_toml set_override hardware_toml ablation_spec mesh_layout graph_json checkpoint
# tsv_task token_cache (default: all). Configures and builds the fuzz preset (clang-14, ASan +
# UBSan, build-fuzz/) first. A crash, sanitizer report, leak or timeout stops with the failing
# input saved as build-fuzz/findings/<target>/crash-* (leak-*, timeout-*, oom-*); reproduce it
# with build-fuzz/bin/fuzz_<target> FILE. Each target's figures (executions, coverage, corpus size)
# are appended to build-fuzz/findings/summary.txt. Exit: 0 no finding, 1 a finding, 2 bad usage.
set -euo pipefail
cd "$(dirname "$0")/.."

all_targets=(model_toml set_override hardware_toml ablation_spec mesh_layout graph_json checkpoint tsv_task token_cache)
seconds=60
merge=1
targets=()
usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; }
while [[ $# -gt 0 ]]; do
  case $1 in
    --time) [[ $# -ge 2 && $2 =~ ^[0-9]+$ && $2 -gt 0 ]] || { echo "fuzz.sh: --time needs a positive number of seconds" >&2; exit 2; }
            seconds=$2; shift 2 ;;
    --no-merge) merge=0; shift ;;
    -h|--help) usage; exit 0 ;;
    -*) echo "fuzz.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) if [[ " ${all_targets[*]} " != *" $1 "* ]]; then
         echo "fuzz.sh: no target '$1'; allowed: ${all_targets[*]}" >&2; exit 2
       fi
       targets+=("$1"); shift ;;
  esac
done
[[ ${#targets[@]} -gt 0 ]] || targets=("${all_targets[@]}")
command -v clang++-14 >/dev/null || { echo "fuzz.sh: clang++-14 is not installed (apt-get install clang-14)" >&2; exit 2; }

cmake --preset fuzz >/dev/null
cmake --build --preset fuzz --target "${targets[@]/#/fuzz_}"

findings=build-fuzz/findings
mkdir -p "$findings"
for t in "${targets[@]}"; do
  corpus=tests/fuzz/corpus/$t
  out=$findings/$t
  mkdir -p "$corpus" "$out"
  log=$out/fuzz.log
  echo "== $t: ${seconds}s (log $log)"
  status=0
  (cd "$out" && "$OLDPWD/build-fuzz/bin/fuzz_$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
     -print_final_stats=1 "$OLDPWD/$corpus") >"$log" 2>&1 || status=$?
  stats=$(grep -E '^#[0-9]+.*(DONE|cov:)' "$log" | tail -1 || true)
  echo "$(date -u +%FT%TZ) $t ${seconds}s exit=$status ${stats}" | tee -a "$findings/summary.txt"
  if [[ $status -ne 0 ]]; then
    grep -E 'ERROR|SUMMARY|==[0-9]+==|Test unit written' "$log" | head -20 >&2 || true
    echo "fuzz.sh: $t found a fault; the input is in $out (reproduce: build-fuzz/bin/fuzz_$t FILE)" >&2
    exit 1
  fi
  if [[ $merge -eq 1 ]]; then
    rm -rf "$out/merged" && mkdir "$out/merged"
    "build-fuzz/bin/fuzz_$t" -merge=1 "$out/merged" "$corpus" >"$out/merge.log" 2>&1
    rm -rf "$corpus" && mv "$out/merged" "$corpus"
    echo "   corpus: $(ls "$corpus" | wc -l) inputs, $(du -sb "$corpus" | cut -f1) bytes"
  fi
done
