#!/usr/bin/env bash
# scripts/setup-node.sh -- installs the official `openai` npm client (the version pinned in
# tests/node/package.json and package-lock.json) into ./build/node (or $BJ_BUILD_DIR/node) for
# test_serve's openai_npm_client test, which skips when it is absent. Needs node and npm (not
# Debian packages bitjit requires: without them this says so and exits 0). Run by scripts/setup.sh; the
# tests themselves never download anything.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BJ_BUILD_DIR:-build}
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "setup-node: node/npm not found: the openai npm client test will be skipped"
  exit 0
fi
mkdir -p "$BUILD/node"
cp tests/node/package.json tests/node/package-lock.json "$BUILD/node/"
if [ -f "$BUILD/node/node_modules/openai/package.json" ] &&
   cmp -s tests/node/package-lock.json "$BUILD/node/node_modules/.package-lock.json.src" 2>/dev/null; then
  exit 0
fi
(cd "$BUILD/node" && npm ci --no-audit --no-fund --loglevel=error)
cp tests/node/package-lock.json "$BUILD/node/node_modules/.package-lock.json.src"
echo "setup-node: openai $(node -p "require('./$BUILD/node/node_modules/openai/package.json').version") in $BUILD/node"
