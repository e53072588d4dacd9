#!/usr/bin/env bash
# Every number docs/MODEL.md and docs/RESULTS.md report for the embedded reasoner, regenerated from the committed
# model: its gates, its classifier (retrained: the committed one belongs to the model it was trained on), Table 3
# on 1000 held-out problems with paper mode, the tau/delta sweep and plot, prompt-only vs switch-aware, the
# switch costs, KV-CoE self-evaluation, and the KV-embedding probes. Two lanes run side by side (one thread
# each: a 1.3M-parameter model decodes fastest single-threaded). About 10-15 min on 2 free cores.
#   scripts/reasoner-results.sh [OUT_DIR]      (default out/reasoner; outputs are .md/.jsonl/.log files there)
# Set KEEP_CLASSIFIER=1 to use the committed classifier instead of retraining it, LANES=a or LANES=b to run one lane.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
OUT="${1:-out/reasoner}"
K=build/bin/kvlens; T=build/bin/kvlens-train
M=models/kvlens-reasoner.gguf; C=models/kvlens-reasoner.classifier.gguf
GIVE_UP=80,85,90,95,98   # the give-up rows (beyond the paper: fast when the classifier predicts "both modes wrong")
SHARED="$ROOT/../shared/data/classification"
mkdir -p "$OUT" docs/figures
for b in "$K" "$T"; do [ -x "$b" ] || { echo "reasoner-results: $b missing (make build first)" >&2; exit 1; }; done

lane_a() {  # gates, classifier, fast/slow thinking
  # exit status 2 = some gate fails: that is a result here, not an error
  $T eval --model $M --per-level 200 --seed 0 --threads 1 > "$OUT/gates.md" 2> "$OUT/gates.log" || [ $? -eq 2 ]
  if [ "${KEEP_CLASSIFIER:-0}" != 1 ]; then
    $K probe prep -m $M -t 1 --arith 300 --levels 1-5 --fast-cap 32 --slow-cap 224 \
      --switch-aware --cut-every 6 --max-cuts 32 --seq-len 32 -o "$OUT/prep.jsonl" 2> models/kvlens-reasoner.classifier.prep.log
    $K probe train --data "$OUT/prep.jsonl" --short-cutoff 16 --hidden 512 --lr 1e-3 --batch 256 --epochs 60 \
      --patience 15 --switch-aware -o $C 2> models/kvlens-reasoner.classifier.train.log
  fi
  [ -f "$OUT/prep.jsonl" ] && $K probe train --data "$OUT/prep.jsonl" --short-cutoff 16 --hidden 512 --lr 1e-3 \
      --batch 256 --epochs 60 --patience 15 -o "$OUT/prompt-only.classifier.gguf" 2> "$OUT/prompt-only.train.log"
  $K think -m $M --classifier $C -t 1 --arith 1000 --table --paper-mode --fast-cap 32 --slow-cap 224 --give-up $GIVE_UP \
    -o "$OUT/think-1000.jsonl" > "$OUT/think-1000.md" 2> "$OUT/think-1000.log"
  $K think -m $M --classifier $C -t 1 --arith 1000 --table --no-confidence --fast-cap 32 --slow-cap 224 \
    --sweep-tau 10,30,50,70,90 --sweep-delta 10,20,30 --give-up $GIVE_UP --plot docs/figures/think_sweep.svg \
    > "$OUT/think-sweep.md" 2> "$OUT/think-sweep.log"
  if [ -f "$OUT/prompt-only.classifier.gguf" ]; then
    $K think -m $M --classifier "$OUT/prompt-only.classifier.gguf" -t 1 --arith 1000 --table --no-confidence \
      --fast-cap 32 --slow-cap 224 --give-up $GIVE_UP > "$OUT/think-prompt-only.md" 2> "$OUT/think-prompt-only.log"
  fi
  # the router study (docs/THINK.md): the KV router beside the hidden-state router (same recipe, --source hidden)
  H=models/kvlens-reasoner.hidden-classifier.gguf
  if [ "${KEEP_CLASSIFIER:-0}" != 1 ]; then
    $K probe prep -m $M -t 1 --arith 300 --levels 1-5 --fast-cap 32 --slow-cap 224 --switch-aware --cut-every 6 \
      --max-cuts 32 --seq-len 32 --source hidden -o "$OUT/prep-hidden.jsonl" 2> models/kvlens-reasoner.hidden-classifier.prep.log
    $K probe train --data "$OUT/prep-hidden.jsonl" --short-cutoff 16 --hidden 512 --lr 1e-3 --batch 256 --epochs 60 \
      --patience 15 --switch-aware -o $H 2> models/kvlens-reasoner.hidden-classifier.train.log
  fi
  $K think -m $M --classifier $C --compare-classifier $H -t 1 --arith 1000 --levels 1-5 --table --study \
    --fast-cap 32 --slow-cap 224 --tau 50 --delta 20 -o "$OUT/study.jsonl" --plot docs/figures/router_study.svg \
    > "$OUT/study.md" 2> "$OUT/study.log"
  $K bench think -m $M --classifier $C -t 1 -c 256 --prompt-tokens 32 --decode 160 --reps 5 \
    > "$OUT/bench-think.md" 2> "$OUT/bench-think.log"
}

lane_b() {  # KV-CoE, KV embeddings
  $K arith -n 1000 --seed 1 --levels 1-5 -o "$OUT/arith-heldout-1000.jsonl" 2> /dev/null
  rm -f "$OUT/coe-reasoner-slow.jsonl"
  $K coe -m $M --data "$OUT/arith-heldout-1000.jsonl" --format arith --mode slow -t 1 \
    -o "$OUT/coe-reasoner-slow.jsonl" 2> "$OUT/coe.log"
  $K eval coe "$OUT/coe-reasoner-slow.jsonl" --by level --bootstrap 1000 --plot docs/figures/coe_roc.svg \
    --title "Tiny reasoner, slow mode, 1000 held-out problems" > "$OUT/coe.md" 2>> "$OUT/coe.log"
  $K bench classify -m $M -t 1 -c 256 -b 256 -fa off --no-datasets --arith 200 \
    > "$OUT/classify-arith.md" 2> "$OUT/classify-arith.log"
  if [ -d "$SHARED" ]; then
    $K bench classify -m $M -t 1 -c 256 -b 256 -fa off --data "$SHARED" --json "$OUT/classify.json" \
      > "$OUT/classify.md" 2> "$OUT/classify.log"
  else
    echo "reasoner-results: $SHARED absent: skipping the 8 classification sets" >&2
  fi
}

case "${LANES:-ab}" in *a*) lane_a & A=$! ;; *) A= ;; esac
case "${LANES:-ab}" in *b*) lane_b & B=$! ;; *) B= ;; esac
rc=0
[ -z "$A" ] || wait $A || rc=1
[ -z "$B" ] || wait $B || rc=1
echo "reasoner-results: outputs in $OUT (exit $rc)" >&2
exit $rc
