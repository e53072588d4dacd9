#!/usr/bin/env bash
# make overthink: fine-tune the committed reasoner (models/kvlens-reasoner.gguf) to think the way Qwen3 does —
# Qwen3's real prompts, a worked fast answer, slow thinks that re-check their first solution in extra rounds
# (docs/MODEL.md, "The overthinking profile"). One `kvlens-train train` run that resumes from the newest
# checkpoint: stop it any time and run the same command again.
#   scripts/train-overthink.sh [BUILD_DIR]
# Environment: KVLENS_OVERTHINK_CKPT (checkpoint dir, default models/ckpt-overthink),
#              KVLENS_OVERTHINK_OUT (the model written at the end, default models/kvlens-reasoner-overthink.gguf).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
T="${1:-build}/bin/kvlens-train"
[ -x "$T" ] || { echo "train-overthink: $T missing (make build first)" >&2; exit 1; }
CK="${KVLENS_OVERTHINK_CKPT:-models/ckpt-overthink}"
OUT="${KVLENS_OVERTHINK_OUT:-models/kvlens-reasoner-overthink.gguf}"
BASE=models/kvlens-reasoner.gguf  # the committed model the fine-tune starts from (at step 0 only)
mkdir -p "$CK"
echo "train-overthink: $(date -u +%FT%TZ) checkpoints in $CK, model to $OUT" >&2
"$T" train --profile overthink --init-from "$BASE" --ctx 768 --row 640 --batch 3 \
  --ckpt "$CK" --out "$OUT" --steps 4000 --lr 3e-5 --warmup 300 --rewarm 300 \
  --spike-guard 1.8 --ckpt-minutes 5 --val-every 250 --val-per-level 16 --rehearse 0.3 --threads 2
echo "train-overthink: wrote $OUT; evaluate with: $T eval --model $OUT --per-level 200 --seed 0" >&2
