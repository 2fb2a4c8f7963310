#!/usr/bin/env bash
# One fuzz target as a ctest test: every input of its corpus, then SECONDS of fuzzing from it.
# New inputs go to a temporary directory (the corpus in the repository is changed only by
# scripts/fuzz.sh). Fails on any crash, sanitizer report, leak or timeout (libFuzzer exits non-zero
# and saves the input as crash-*/leak-*/timeout-* in the temporary directory, printed below).
#   run_target.sh BINARY CORPUS_DIR SECONDS
set -euo pipefail
bin=$1 corpus=$2 seconds=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/new"
status=0
(cd "$work" && "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
   "$work/new" "$corpus") || status=$?
if [[ $status -ne 0 ]]; then
  for f in "$work"/crash-* "$work"/leak-* "$work"/timeout-* "$work"/oom-*; do
    [[ -e $f ]] && { echo "input $f (base64):"; base64 "$f"; }
  done
fi
exit $status
