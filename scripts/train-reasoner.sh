#!/usr/bin/env bash
# make reasoner: train models/kvlens-reasoner.gguf from scratch with kvlens-train, replaying the committed model's
# recipe chunk by chunk (docs/MODEL.md, "Training"). Each chunk is one `kvlens-train train` run that resumes from
# the newest checkpoint in models/ckpt/ and stops at a fixed step, so the whole is resumable: stop it any time
# and run it again. About 3 h 55 min on 2 free cores (24,800 steps, docs/MODEL.md).
#   scripts/train-reasoner.sh [BUILD_DIR]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
T="${1:-build}/bin/kvlens-train"
[ -x "$T" ] || { echo "train-reasoner: $T missing (make build first)" >&2; exit 1; }
OUT=models/kvlens-reasoner.gguf
CK=models/ckpt
mkdir -p "$CK"
latest() { ls "$CK" 2>/dev/null | sed -n 's/^ckpt-\([0-9]*\)\.gguf$/\1/p' | sort -n | tail -1; }
# chunk: stop step | schedule length (--steps) | level weights (empty: the default 1,1,1.5,2,3) | other flags
CHUNKS=(
  "310|1700|"
  "973|2600|"
  "1800|1800|3,2.5,2,1.5,1"
  "4063|4200|2,2,2,1.5,1.5"
  "5111|5300|2,2,2,1.5,1.5"
  "10100|10100|1.5,2.5,3,1.5,1.5|--lr 5.5e-4"
  "20100|20100|0.75,1,2,3,3.5|--lr 5.5e-4 --spike-guard 1.8"
  "21200|21200|2.5,1,1.5,2,3.5|--lr 5.5e-4 --spike-guard 1.8"
  "24800|24800|1.5,0.75,1,2,6|--lr 1.5e-4 --rewarm 300 --cosine-from 21200 --spike-guard 1.8"
)
for c in "${CHUNKS[@]}"; do
  IFS='|' read -r stop steps weights extra <<< "$c"
  at="$(latest)"; at="${at:-0}"
  if [ "$at" -ge "$stop" ]; then continue; fi
  args=(train --out "$OUT" --ckpt "$CK" --steps "$steps" --stop-at "$stop" --export-partial)
  [ -n "$weights" ] && args+=(--level-weights "$weights")
  [ -n "${extra:-}" ] && read -r -a more <<< "$extra" && args+=("${more[@]}")
  echo "train-reasoner: chunk to step $stop (schedule $steps steps${weights:+, level weights $weights}${extra:+, $extra}), from step $at" >&2
  rc=0; "$T" "${args[@]}" || rc=$?
  if [ "$rc" -ne 0 ] && [ "$rc" -ne 3 ]; then exit "$rc"; fi
  [ "$(latest)" -ge "$stop" ] || { echo "train-reasoner: chunk stopped before step $stop; rerun to resume" >&2; exit 3; }
done
echo "train-reasoner: $OUT is at step $(latest); evaluate with: $T eval --model $OUT --per-level 200 --seed 0" >&2
