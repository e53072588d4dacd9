#!/usr/bin/env bash
# End-to-end wall time of the batched engine (issue 14; docs/PERFORMANCE.md, "End to end"): `kvlens think --table`
# on N held-out problems and `kvlens probe prep --switch-aware` on M training problems of the embedded reasoner,
# at each -np against -np 1, in one run. Prints one markdown row per (command, -np): wall and CPU seconds, the
# speed-up against -np 1, and whether the output (the Table 3 text; the records but their timing fields, floats
# within 1e-2) equals -np 1's.
#   scripts/bench-e2e.sh [BUILD_DIR]     env: KVLENS_E2E_NP ("1 4 8 16"), KVLENS_E2E_THINK (1000), KVLENS_E2E_PREP (300),
#                                        KVLENS_E2E_THREADS (2), KVLENS_E2E_ARGS (extra flags for both, e.g. "-ctk f32 -ctv f32 -fa off")
# Not a test: run it on an otherwise idle machine.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
K="${1:-build}/bin/kvlens"
[ -x "$K" ] || { echo "bench-e2e: $K missing (make build first)" >&2; exit 1; }
M=models/kvlens-reasoner.gguf
C=models/kvlens-reasoner.classifier.gguf
NPS="${KVLENS_E2E_NP:-1 4 8 16}"
NT="${KVLENS_E2E_THINK:-1000}"
NP_PREP="${KVLENS_E2E_PREP:-300}"
T="${KVLENS_E2E_THREADS:-2}"
EXTRA="${KVLENS_E2E_ARGS:-}"
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT

# records a and b equal but for their timing fields; floats within 1e-2 (an f16 cache decoded in other ubatches moves
# pooled K/V by ~1e-3: f16 rounding; the -np identity tests run on an f32 cache and compare exactly)
same_records() {
  python3 -c '
import json, sys
drop = {"seconds", "run"}
def eq(x, y):
    if isinstance(x, dict):
        return isinstance(y, dict) and set(x) - drop == set(y) - drop and all(eq(x[k], y[k]) for k in x if k not in drop)
    if isinstance(x, list):
        return isinstance(y, list) and len(x) == len(y) and all(eq(u, v) for u, v in zip(x, y))
    if isinstance(x, float) or isinstance(y, float):
        return isinstance(y, (int, float)) and abs(x - y) <= 1e-2 * max(1.0, abs(x), abs(y))
    return x == y
a = [json.loads(l) for l in open(sys.argv[1])]
b = [json.loads(l) for l in open(sys.argv[2])]
sys.exit(0 if len(a) == len(b) and all(eq(x, y) for x, y in zip(a, b)) else 1)' "$1" "$2"
}

run() {  # name np command...: prints "wall user sys"
  local name="$1" np="$2"
  shift 2
  local TIMEFORMAT="%R %U %S"
  { time "$@" > "$OUT/$name.$np.txt" 2> "$OUT/$name.$np.err"; } 2> "$OUT/$name.$np.time" ||
    { echo "bench-e2e: $name -np $np failed:" >&2; tail -5 "$OUT/$name.$np.err" >&2; exit 1; }
  cat "$OUT/$name.$np.time"
}

echo "| command | -np | wall s | CPU s (user + sys) | vs -np 1 | output = -np 1's |"
echo "|---|---:|---:|---:|---:|---|"
for what in think prep; do
  base=""
  for np in $NPS; do
    if [ "$what" = think ]; then
      read -r wall user sys < <(run think "$np" "$K" think -m "$M" --classifier "$C" --arith "$NT" --table -t "$T" $EXTRA \
        -np "$np" -o "$OUT/think.$np.jsonl")
      first="${NPS%% *}"
      same=$(cmp -s "$OUT/think.$np.txt" "$OUT/think.$first.txt" &&
        same_records "$OUT/think.$np.jsonl" "$OUT/think.$first.jsonl" && echo yes || echo no)
      label="think --table, $NT problems"
    else
      read -r wall user sys < <(run prep "$np" "$K" probe prep -m "$M" --arith "$NP_PREP" --switch-aware -t "$T" $EXTRA \
        -np "$np" -o "$OUT/prep.$np.jsonl")
      same=$(same_records "$OUT/prep.$np.jsonl" "$OUT/prep.${NPS%% *}.jsonl" && echo yes || echo no)
      label="probe prep --switch-aware, $NP_PREP problems"
    fi
    [ -z "$base" ] && base="$wall"
    cpu=$(python3 -c "print(f'{$user + $sys:.1f}')")
    speed=$(python3 -c "print(f'{$base / max($wall, 1e-9):.2f}x')")
    echo "| $label | $np | $wall | $cpu | $speed | $same |"
  done
done
