#!/usr/bin/env bash
# make demo: the main job on the newest tiny model available.
# (The fast/slow-thinking table on the embedded reasoner replaces this once its classifier is committed.)
set -euo pipefail
BUILD="${1:-build}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KV="$BUILD/bin/kvlens"
M="$ROOT/models/kvlens-reasoner.gguf"
if [ ! -f "$M" ]; then M="$ROOT/../shared/data/models/stories260K/stories260K.gguf"; fi
if [ ! -f "$M" ]; then echo "demo: no model found (models/kvlens-reasoner.gguf or ../shared)" >&2; exit 1; fi
echo "== kvlens info"; "$KV" info -m "$M"
echo; echo "== kvlens generate (greedy)"; "$KV" generate -m "$M" -p "Once upon a time" -n 48
OUT="$(mktemp -d)"; trap 'rm -rf "$OUT"' EXIT
echo; echo "== kvlens kv-dump --layers last:2 --hidden"; "$KV" kv-dump -m "$M" -p "Once upon a time" --layers last:2 --hidden -o "$OUT/kv"
ls -l "$OUT/kv"
