#!/usr/bin/env bash
# Runs every line of README.md that starts with "$ " from the repository root, in a scratch copy
# of the output folders, and fails if any exits non-zero.
set -euo pipefail
bin=$1
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$root"
n=0
while IFS= read -r line; do
  cmd=${line#\$ }
  cmd=${cmd//build\/bin\//$bin/}
  cmd=${cmd// out\// $work/out/}
  mkdir -p "$work/out"
  echo "+ $cmd"
  bash -c "$cmd" >/dev/null
  n=$((n + 1))
done < <(grep -E '^\$ ' README.md)
[ "$n" -gt 0 ] || { echo "no examples found in README.md"; exit 1; }
echo "ran $n README examples"
