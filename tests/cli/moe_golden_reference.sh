#!/usr/bin/env bash
# Re-runs the independent NumPy reference of the MoE layer and checks that the committed golden
# file tests/data/moe_golden.json is what it produces (numbers within 1e-12 relative). Needs
# Debian's /usr/bin/python3 with python3-numpy. Argument: the bin directory (unused).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
/usr/bin/python3 "$root/tests/reference/moe_reference.py" --check "$root/tests/data/moe_golden.json"
