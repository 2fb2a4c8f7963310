#!/usr/bin/env bash
# Installs every system package Switchyard needs (Debian bookworm). Idempotent and quiet:
# runs apt-get only when something is missing, and `apt-get update` first.
set -euo pipefail

packages=(
  build-essential cmake ninja-build ccache pkg-config
  libtbb-dev libboost-graph-dev libdnnl-dev ocl-icd-opencl-dev opencl-headers libopenmpi-dev openmpi-bin
  libfmt-dev catch2 graphviz libgraphviz-dev libtomlplusplus-dev nlohmann-json3-dev
  libcli11-dev
  python3-numpy
  libsentencepiece-dev
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
