#!/usr/bin/env bash
# The test command: install what is missing, configure, build, run every test; then (without
# arguments) the parsers' fuzz targets (tests/fuzz, the fuzz preset: clang-14, build-fuzz/), each
# over its corpus and 5 s more (54 s for the nine on two busy cores, plus the build: 2.5 min cold; skipped when clang-14 is missing).
#   scripts/test.sh [CTEST ARGS...]   e.g. -R cli.simulate (then no fuzz targets)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake --preset release >/dev/null
cmake --build --preset release
ctest --preset release -j2 "$@"
[[ $# -eq 0 ]] || exit 0
if command -v clang++-14 >/dev/null; then
  cmake --preset fuzz >/dev/null
  cmake --build --preset fuzz
  ctest --preset fuzz -j2
else
  echo "test.sh: clang++-14 not installed; the fuzz targets (tests/fuzz) were not built or run" >&2
fi
