#!/usr/bin/env bash
# scripts/setup.sh -- one-step set-up on a fresh Debian 12 machine (as root, or with sudo):
# installs the Debian packages bitjit needs that are missing, configures and builds into
# ./build (or $BJ_BUILD_DIR). Safe to run again: it only installs and rebuilds what changed.
#   BJ_BUILD_TYPE   CMake build type (default RelWithDebInfo)
#   BJ_CMAKE_ARGS   extra CMake arguments (e.g. -DBJ_SANITIZE=ON)
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(build-essential cmake pkg-config llvm-19-dev clang-19 llvm-19-tools libffi-dev
          libcriterion-dev libpcre2-dev libjansson-dev libxxhash-dev libclang-rt-19-dev
          libmicrohttpd-dev libedit-dev tmux)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

BUILD=${BJ_BUILD_DIR:-build}
# shellcheck disable=SC2086
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE="${BJ_BUILD_TYPE:-RelWithDebInfo}" ${BJ_CMAKE_ARGS:-} >/dev/null
cmake --build "$BUILD" -j"$(nproc)"
