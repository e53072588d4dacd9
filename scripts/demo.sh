#!/usr/bin/env bash
# make demo: the main job — the paper's Table 3 (always-fast, always-slow, initial decision, initial + online
# switch; accuracy, mean generated tokens, KV-CoE confidence AUROC) on 200 held-out problems of the embedded
# reasoner with its committed KVClassifier, then the router study (oracle, random router, trial-answer exit, 95%
# bootstrap intervals: docs/THINK.md). Without them it falls back to a tour of the newest tiny model.
set -euo pipefail
BUILD="${1:-build}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KV="$BUILD/bin/kvlens"
M="$ROOT/models/kvlens-reasoner.gguf"
C="$ROOT/models/kvlens-reasoner.classifier.gguf"
H="$ROOT/models/kvlens-reasoner.hidden-classifier.gguf"  # the router study's hidden-state router
N="${DEMO_N:-200}"
THREADS="${DEMO_THREADS:-1}"  # a 1.3M-parameter model decodes fastest on one thread
if [ -f "$M" ] && [ -f "$C" ]; then
  echo "== kvlens think --table: $N held-out arithmetic problems (levels 1-5, seeds with the held-out bit)"
  echo "   model $M"
  echo "   classifier $C"
  start=$(date +%s)
  "$KV" think -m "$M" --classifier "$C" --arith "$N" --levels 1-5 --table -t "$THREADS" \
    --fast-cap 32 --slow-cap 224 --tau 50 --delta 20 --give-up 98 --study $( [ -f "$H" ] && echo --compare-classifier "$H" )
  echo; echo "[demo took $(( $(date +%s) - start )) s; recipe and full results: docs/THINK.md, docs/RESULTS.md]"
  exit 0
fi
echo "demo: $M or its classifier is missing: showing the engine on the newest tiny model instead" >&2
if [ ! -f "$M" ]; then M="$ROOT/../shared/data/models/stories260K/stories260K.gguf"; fi
if [ ! -f "$M" ]; then echo "demo: no model found (models/kvlens-reasoner.gguf or ../shared)" >&2; exit 1; fi
echo "== kvlens info"; "$KV" info -m "$M"
echo; echo "== kvlens generate (greedy)"; "$KV" generate -m "$M" -p "Once upon a time" -n 48
OUT="$(mktemp -d)"; trap 'rm -rf "$OUT"' EXIT
echo; echo "== kvlens kv-dump --layers last:2 --hidden"; "$KV" kv-dump -m "$M" -p "Once upon a time" --layers last:2 --hidden -o "$OUT/kv"
ls -l "$OUT/kv"
