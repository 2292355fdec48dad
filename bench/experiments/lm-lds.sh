#!/usr/bin/env bash
# LDS of a tiny GPT on real text: Debian's fortunes (fortunes + wisdom + platitudes; `apt-get install
# fortunes`), a document per fortune, byte tokens, 64 per sequence, one sequence per document (a long
# fortune fills several), 15 % of the fortunes held out. Queries: the first N held-out sequences,
# each measured by the summed log-probability of its tokens. Each subset is retrained with the run's
# own recipe (12 epochs, one-cycle lr 0.1, batch 16) on half the training sequences.
# PACK=stream instead cuts the stream of fortunes into consecutive 64-token sequences, so that every
# sequence (and so every subset) holds the same number of tokens.
# Usage: [PACK=docs|stream] bench/experiments/lm-lds.sh [OUT_DIR] [SUBSETS] [QUERIES] [SHARDS] [METHODS]
# SHARDS processes retrain in parallel (the cache is shared; an interrupted run resumes).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-runs/lm-lds}
SUBSETS=${2:-50}
QUERIES=${3:-100}
SHARDS=${4:-1}
METHODS=${5:-ekfac,kfac,diagonal,identity}
if [ -z "${INFLUENCE_CLI:-}" ]; then
  dotnet build -c Release src/InfluenceSharp.Cli >/dev/null
  INFLUENCE_CLI="dotnet src/InfluenceSharp.Cli/bin/Release/net10.0/influence.dll"
fi
I="nice -n 10 $INFLUENCE_CLI"
export OMP_NUM_THREADS=1
mkdir -p "$OUT"
# strfile format: entries end at a line holding only '%'; the text reader's docs=blank wants blank
# lines between documents, so blank lines inside an entry are dropped.
for f in fortunes wisdom platitudes; do
  awk 'BEGIN { RS = "\n%\n" } { gsub(/\n[ \t]*\n/, "\n"); sub(/\n+$/, ""); if (length($0) > 0) print $0 "\n" }' "/usr/share/games/fortunes/$f"
done > "$OUT/fortunes.txt"
DATA="text:$OUT/fortunes.txt?tokenizer=byte&seq=64&pack=${PACK:-docs}&test-fraction=0.15&split-seed=0"
[ -f "$OUT/run/run.json" ] || $I train --data "$DATA" --model gpt --widths 32,2,2 --epochs 12 --batch-size 16 --lr 0.1 \
  --schedule onecycle --weight-decay 0 --seed 0 --out "$OUT/run" --threads 1 --quiet
LDS="evaluate lds --run $OUT/run --subsets $SUBSETS --query-count $QUERIES --threads 1"
if [ "$SHARDS" -gt 1 ]; then
  for ((i = 0; i < SHARDS; i++)); do $I $LDS --methods identity --shard "$i/$SHARDS" --quiet > "$OUT/shard-$i.log" 2>&1 & done
  wait
fi
time $I $LDS --methods "$METHODS"
