#!/usr/bin/env bash
# llama-server from the pinned llama.cpp (the baseline of `kvlens bench serve`), built with llama.cpp's own CMake
# into build/llama-server/ (Release, the CPU backend, no web UI). Idempotent: rebuilds only what changed.
# Not part of `make test`: about 10 minutes on 2 cores the first time.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/deps.sh"
LLAMA_DIR="${KVLENS_LLAMA_DIR:-$ROOT/third_party/llama.cpp}"
OUT="${1:-$ROOT/build/llama-server}"
# ggml-cpu as kvlens builds it: native, without Intel AMX unless KVLENS_GGML_AMX=ON (llama.cpp#20824)
LAUNCH=()
if [ "${KVLENS_GGML_AMX:-OFF}" != ON ] && [ "$(uname -m)" = x86_64 ]; then
  LAUNCH=(-DCMAKE_C_COMPILER_LAUNCHER="$ROOT/scripts/cc-no-amx.sh" -DCMAKE_CXX_COMPILER_LAUNCHER="$ROOT/scripts/cc-no-amx.sh")
fi
cmake -S "$LLAMA_DIR" -B "$OUT" -G Ninja -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF "${LAUNCH[@]}" \
  -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_TESTS=OFF \
  -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF >/dev/null
cmake --build "$OUT" --target llama-server
echo "llama-server: $OUT/bin/llama-server" >&2
