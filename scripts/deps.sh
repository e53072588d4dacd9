#!/usr/bin/env bash
# Idempotent set-up for kvlens on Debian 12 (root): apt packages + the pinned llama.cpp.
# Used by both `make demo` and `make test`. Safe to run again: it only does what is missing.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PIN_NPM="node-llama-cpp@3.21.1"
PIN_COMMIT="80fb11ac73e66d89eae2c6a91d8a77428fa733ed"
LLAMA_DIR="${KVLENS_LLAMA_DIR:-$ROOT/third_party/llama.cpp}"

PKGS=(build-essential cmake ninja-build git ca-certificates nlohmann-json3-dev libcli11-dev
      libcpp-httplib-dev liblinear-dev libgtest-dev libgmock-dev libbenchmark-dev
      clang libclang-rt-14-dev)  # clang + its compiler-rt (libFuzzer, sanitizers): make fuzz
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
command -v npm >/dev/null 2>&1 || missing+=(npm)
if ((${#missing[@]})); then
  echo "deps: installing ${missing[*]}" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# kvlens serve's real-client test: the official OpenAI Node SDK (tests/apps/node/package.json), only when missing
NODE_DIR="$ROOT/tests/apps/node"
if [ -f "$NODE_DIR/package.json" ] && [ ! -d "$NODE_DIR/node_modules/openai" ] && command -v npm >/dev/null 2>&1; then
  echo "deps: installing the openai npm package into tests/apps/node" >&2
  if [ -f "$NODE_DIR/package-lock.json" ]; then
    (cd "$NODE_DIR" && npm ci --no-audit --no-fund --silent) || echo "deps: warning: npm ci failed (the Node SDK test will skip)" >&2
  else
    (cd "$NODE_DIR" && npm install --no-audit --no-fund --silent) || echo "deps: warning: npm install failed (the Node SDK test will skip)" >&2
  fi
fi

if [ -d "$LLAMA_DIR/.git" ] && [ "$(git -C "$LLAMA_DIR" rev-parse HEAD)" = "$PIN_COMMIT" ]; then
  exit 0
fi
echo "deps: fetching llama.cpp from npm $PIN_NPM" >&2
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "$PIN_NPM" >/dev/null && tar xzf node-llama-cpp-*.tgz package/llama/gitRelease.bundle)
rm -rf "$LLAMA_DIR"; mkdir -p "$(dirname "$LLAMA_DIR")"
git clone -q "$tmp/package/llama/gitRelease.bundle" "$LLAMA_DIR" 2>/dev/null
git -C "$LLAMA_DIR" checkout -q "$PIN_COMMIT"
got="$(git -C "$LLAMA_DIR" rev-parse HEAD)"
if [ "$got" != "$PIN_COMMIT" ]; then echo "deps: llama.cpp commit $got != pinned $PIN_COMMIT" >&2; exit 1; fi
echo "deps: llama.cpp $PIN_COMMIT in $LLAMA_DIR" >&2
