#!/usr/bin/env bash
# The bad-input matrix of docs/RELIABILITY.md: runs each case with BUILD/bin/kvlens and prints a markdown table
# (case | command | message | exit). Needs only the repository (models/kvlens-reasoner.gguf and its classifier);
# every file it makes lives in a temporary folder, removed at the end.
#   scripts/bad-input-matrix.sh [BUILD]   (default: build)
set -u
cd "$(dirname "$0")/.."
BUILD=${1:-build}
K=$PWD/$BUILD/bin/kvlens
R=$PWD/models/kvlens-reasoner.gguf
C=$PWD/models/kvlens-reasoner.classifier.gguf
[ -x "$K" ] || { echo "no $K: build first (make build)" >&2; exit 1; }
[ -f "$R" ] || { echo "no $R" >&2; exit 1; }
T=$(mktemp -d /tmp/kvlens-matrix-XXXXXX)
trap 'rm -rf "$T"' EXIT

# fixtures
: > "$T/empty.gguf"
echo "this is not a model" > "$T/text.gguf"
head -c 100000 "$R" > "$T/half.gguf"
: > "$T/empty.txt"
printf 'Once upon \xff\xfe a time' > "$T/bad-utf8.txt"
echo "1+1" > "$T/q.txt"
: > "$T/empty.jsonl"
long=$(for i in $(seq 200); do printf '1+1 '; done)
ln -s /dev/full "$T/full.npy"; ln -s /dev/full "$T/full.jsonl"
"$K" arith -n 3 -o "$T/a.jsonl" 2>/dev/null
"$K" coe -m "$R" --data "$T/a.jsonl" --format arith -o "$T/r.jsonl" --limit 2 2>/dev/null
"$K" think -m "$R" --classifier "$C" --arith 2 -o "$T/t.jsonl" >/dev/null 2>&1
for i in 0 1; do "$K" coe -m "$R" --data "$T/a.jsonl" --format arith -o "$T/s$i.jsonl" --shard $i/2 2>/dev/null; done
"$K" coe -m "$R" --data "$T/a.jsonl" --format arith -o "$T/s1-layers.jsonl" --layers last:2 --shard 1/2 2>/dev/null
# the classifier with its version key stored as uint32 instead of int32 (same size: patch the type id in place)
python3 - "$C" "$T/c-u32.gguf" <<'PY'
import sys
b = bytearray(open(sys.argv[1], 'rb').read())
k = b"kvlens.probe.version"
i = b.index(k) + len(k)
assert b[i:i+4] == (5).to_bytes(4, 'little')  # GGUF_TYPE_INT32
b[i:i+4] = (4).to_bytes(4, 'little')          # GGUF_TYPE_UINT32
open(sys.argv[2], 'wb').write(b)
PY

echo "| case | command | message | exit |"
echo "|---|---|---|---|"
row() {  # row CASE COMMAND...   (the command runs in $T; stdout is discarded unless it is the point)
    local name=$1; shift
    local cmd="$*" out rc msg
    out=$(cd "$T" && eval "$cmd" 2>&1 >/dev/null </dev/null); rc=$?
    msg=$(printf '%s\n' "$out" | grep -E '^kvlens: (error|warning)' | tail -1)
    [ -z "$msg" ] && msg=$(printf '%s\n' "$out" | tail -1)
    local shown=${cmd//$K/kvlens}; shown=${shown//$R/R.gguf}; shown=${shown//$C/C.gguf}; shown=${shown//$T\//}
    shown=${shown//$long/<800 chars>}
    msg=${msg//$T\//}; msg=${msg//$R/R.gguf}
    msg=$(printf '%s' "$msg" | sed -E 's/, [0-9.]+ tok\/s//')  # timings vary from run to run
    printf '| %s | `%s` | %s | %s |\n' "$name" "${shown//|/\\|}" "${msg//|/\\|}" "$rc"
}
G="$K generate -m $R -p 1+1 -n 4"
row "model missing" "$K info -m nope.gguf"
row "model empty" "$K info -m empty.gguf"
row "model not a GGUF" "$K info -m text.gguf"
row "model truncated" "$K info -m half.gguf"
row "model is a folder" "$K info -m ."
row "classifier key of the wrong type" "$K think -m $R --classifier c-u32.gguf -p 1+1"
row "--temp nan" "$G --temp nan"
row "--temp inf" "$G --temp inf"
row "--top-p out of range" "$G --top-p 2"
row "-c negative" "$G -c -5"
row "-b zero" "$G -b 0"
row "-t above the cores (warning only)" "$G -t 4000"
row "-s -1 (random seed, accepted)" "$G -s -1"
row "--tau nan" "$K think -m $R -p 1+1 --tau nan"
row "--delta inf" "$K think -m $R -p 1+1 --delta inf"
row "--give-up nan" "$K think -m $R -p 1+1 --give-up nan"
row "probe train --wd -1" "$K probe train --data r.jsonl -o c.gguf --wd -1"
row "probe train --wd nan" "$K probe train --data r.jsonl -o c.gguf --wd nan"
row "probe train --lr nan" "$K probe train --data r.jsonl -o c.gguf --lr nan"
row "probe train --lr inf" "$K probe train --data r.jsonl -o c.gguf --lr inf"
row "probe train --val-frac 1" "$K probe train --data r.jsonl -o c.gguf --val-frac 1"
row "probe train -o unwritable (before training)" "$K probe train --data r.jsonl -o /proc/x"
row "eval --bootstrap negative" "$K eval coe r.jsonl --bootstrap -5"
row "eval --by unknown field" "$K eval coe r.jsonl --by nosuchfield"
row "eval --json unwritable" "$K eval coe r.jsonl --json /proc/x.json"
row "embed --seed negative" "$K embed -m $R -p x --seed -3"
row "embed --n-seq 0" "$K embed -m $R -p x --n-seq 0"
row "-p and -f together" "$K generate -m $R -p 1+1 -f q.txt"
row "-f a folder" "$K generate -m $R -f ."
row "empty prompt" "$K generate -m $R -f empty.txt"
row "prompt not UTF-8" "$K generate -m $R -f bad-utf8.txt"
row "prompt longer than the context" "$K generate -m $R -c 64 -p '$long'"
row "generate past the context (exit 0, stop: context)" "$K generate -m $R -p 1+1 -n 1000 -c 4"
row "layer out of range" "$K kv-dump -m $R -p 1+1 -o d --layers 99"
row "unknown cache type" "$G -ctk q9_9"
row "unknown command" "$K frobnicate"
row "unknown flag" "$K info -m $R --bogus"
row "stdout on a full disk" "$K embed -m $R -p 1+1 1>/dev/full"
row "embed -o x.npy on a full disk" "$K embed -m $R -p 1+1 -o full.npy"
row "embed -o x.jsonl on a full disk" "$K embed -m $R -p 1+1 -o full.jsonl"
row "embed -o a folder" "$K embed -m $R -p 1+1 -o ."
row "arith to a full stdout" "$K arith -n 5 -o - 1>/dev/full"
row "coe on empty data" "$K coe -m $R --data empty.jsonl --format arith -o e.jsonl"
row "coe resumed with another --mode" "$K coe -m $R --data a.jsonl --format arith -o r.jsonl --mode fast"
row "coe resumed with other layers" "$K coe -m $R --data a.jsonl --format arith -o r.jsonl --layers last:2"
row "think -o resumed with another --tau" "$K think -m $R --classifier $C --arith 2 -o t.jsonl --tau 30"
row "coe unknown --mode" "$K coe -m $R --data a.jsonl --format arith -o x.jsonl --mode medium"
row "coe unknown --format" "$K coe -m $R --data a.jsonl --format nope -o x.jsonl"
row "--shard out of range" "$K coe -m $R --data a.jsonl --format arith -o x.jsonl --shard 2/2"
row "--shard more shards than items" "$K coe -m $R --data a.jsonl --format arith -o x.jsonl --shard 0/4"
row "merge with a shard missing" "$K merge -o m.jsonl s0.jsonl"
row "merge with a shard twice" "$K merge -o m.jsonl s0.jsonl s0.jsonl s1.jsonl"
row "merge shards of other settings" "$K merge -o m.jsonl s0.jsonl s1-layers.jsonl"
row "merge an unsharded output" "$K merge -o m.jsonl s0.jsonl r.jsonl"
nolisten=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
row "--rpc to a port nothing listens on" "$K kv-dump -m $R -p 1+1 -o d --rpc 127.0.0.1:$nolisten"
row "--rpc without a port" "$K kv-dump -m $R -p 1+1 -o d --rpc localhost"
row "--rpc port out of range" "$K kv-dump -m $R -p 1+1 -o d --rpc 127.0.0.1:70000"
row "--rpc server listed twice" "$K kv-dump -m $R -p 1+1 -o d --rpc 127.0.0.1:5,127.0.0.1:5"
row "-ts not numbers" "$K kv-dump -m $R -p 1+1 -o d -ts 1,x"
