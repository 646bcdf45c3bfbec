#!/usr/bin/env bash
# scripts/setup.sh -- one-step set-up on a fresh Debian 12 machine (as root, or with sudo):
# installs the Debian packages bitjit needs that are missing, configures and builds into
# ./build (or $BJ_BUILD_DIR). Safe to run again: it only installs and rebuilds what changed.
# nginx and python3-prometheus-client are for tests only: the fleet test (replicas behind nginx,
# docs/deploy.md) and an independent parse of /metrics. Installing nginx does not start it in a
# container (policy-rc.d); the tests run their own nginx on loopback ports.
#   BJ_BUILD_TYPE   CMake build type (default RelWithDebInfo)
#   BJ_CMAKE_ARGS   extra CMake arguments (e.g. -DBJ_SANITIZE=ON)
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(build-essential cmake pkg-config llvm-19-dev clang-19 llvm-19-tools libffi-dev
          libcriterion-dev libpcre2-dev libjansson-dev libxxhash-dev libclang-rt-19-dev
          libmicrohttpd-dev libedit-dev tmux nginx python3-prometheus-client)

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
# the pinned openai npm client for test_serve's openai_npm_client (skipped without node/npm)
BJ_BUILD_DIR="$BUILD" ./scripts/setup-node.sh ||
  echo "setup: the openai npm client could not be installed: test_serve's openai_npm_client will be skipped"
