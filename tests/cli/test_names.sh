#!/usr/bin/env bash
# Catch2 test names must not contain '[' (CMake list syntax would merge ctest entries).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
if grep -rnE 'TEST_CASE\("[^"]*\[' "$root/tests"; then
  echo "test names above contain '[': move brackets into the tag argument"
  exit 1
fi
