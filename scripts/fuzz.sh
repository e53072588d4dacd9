#!/usr/bin/env bash
# Build the libFuzzer targets (tests/fuzz) in build-fuzz with clang and run one: scripts/fuzz.sh TARGET SECONDS
# [libFuzzer flags...]. TARGET: a name like fuzz_npy, or "all" (each target SECONDS in turn, stop at a crash).
# Runs on a copy of the committed seed corpus (tests/fuzz/corpus/TARGET) in build-fuzz/corpus/TARGET, so the
# repository's corpus stays small; crash files go to build-fuzz/crashes/. The llama.cpp libraries come from
# KVLENS_LLAMA_PREBUILT (default: build/, the normal build; it must have been built).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET="${1:?usage: scripts/fuzz.sh TARGET|all SECONDS [libFuzzer flags]}"
SECS="${2:?usage: scripts/fuzz.sh TARGET|all SECONDS [libFuzzer flags]}"
shift 2
BUILD="${FUZZ_BUILD:-$ROOT/build-fuzz}"
PREBUILT="${KVLENS_LLAMA_PREBUILT:-$ROOT/build}"
if [ ! -d "$PREBUILT/llama.cpp" ] && [ -f "$PREBUILT/CMakeCache.txt" ]; then  # that build reuses another's
  PREBUILT="$(sed -n 's/^KVLENS_LLAMA_PREBUILT:PATH=//p' "$PREBUILT/CMakeCache.txt")"
fi
[ -d "$PREBUILT/llama.cpp" ] || { echo "fuzz: no llama.cpp libraries in '$PREBUILT' (build first: make build)" >&2; exit 1; }
JOBS="${JOBS:-$(nproc)}"
cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ \
  -DCMAKE_C_COMPILER=clang -DKVLENS_FUZZ=ON -DKVLENS_BUILD_TESTS=OFF -DKVLENS_EXCLUDE_DIRS='.*' \
  -DKVLENS_LLAMA_PREBUILT="$PREBUILT" >/dev/null
cmake --build "$BUILD" --target fuzz-all -j "$JOBS"
if [ "$TARGET" = all ]; then
  targets=$(cd "$ROOT/tests/fuzz" && ls fuzz_*.cpp | sed 's/\.cpp$//')
else
  targets="$TARGET"
fi
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
mkdir -p "$BUILD/crashes"
for t in $targets; do
  mkdir -p "$BUILD/corpus/$t"
  cp -n "$ROOT/tests/fuzz/corpus/$t"/* "$BUILD/corpus/$t"/ 2>/dev/null || true
  echo "== $t ($SECS s)" >&2
  rc=0
  "$BUILD/fuzz/$t" -max_total_time="$SECS" -print_final_stats=1 -artifact_prefix="$BUILD/crashes/$t-" \
    "$@" "$BUILD/corpus/$t" >"$BUILD/$t.log" 2>&1 || rc=$?
  grep -v '^#[0-9].*\(NEW\|REDUCE\|pulse\)' "$BUILD/$t.log" | tail -n 40 >&2
  [ "$rc" -eq 0 ] || { echo "fuzz: $t failed (exit $rc; crash files in $BUILD/crashes, log $BUILD/$t.log)" >&2; exit 1; }
done
