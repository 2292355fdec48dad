#!/usr/bin/env bash
# Peak RSS against the number of training images: a pretrained ResNet-18 fine-tuned on a synthetic
# RGB PNG image folder of N training images (N = 2,000, 8,000, 32,000; 500 test images), then
# detect-mislabeled with TRAK, EK-FAC (last layer) and TracIn (last layer), and one TRAK explanation.
# Every stage runs as its own process under GNU time; peak RSS = its maximum resident set size.
#
# Usage: bench/experiments/stream-rss.sh [OUT_DIR] (default /tmp/stream-rss)
#   SIZES="2000 8000 32000" SIZE=32 (image side) EPOCHS=1 THREADS=2
#   FREEZE: the frozen layers (default: the whole backbone, so fine-tuning trains fc; attribution
#   tracks the trainable layers). INFLUENCE_CLI: the tool to run (default: this checkout's Release build).
# Output: OUT/stages.tsv (n, stage, seconds, peak RSS MiB, exit) and a markdown table on stdout.
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
OUT=$(realpath -m "${1:-/tmp/stream-rss}")
SIZES=${SIZES:-"2000 8000 32000"}
SIZE=${SIZE:-32}
EPOCHS=${EPOCHS:-1}
THREADS=${THREADS:-2}
FREEZE=${FREEZE:-conv1,bn1,layer1,layer2,layer3,layer4}
I=${INFLUENCE_CLI:-"dotnet $ROOT/src/InfluenceSharp.Cli/bin/Release/net10.0/influence.dll"}
mkdir -p "$OUT"

stage() {
  local n=$1 name=$2; shift 2
  mkdir -p "$OUT/logs"
  echo "[$(date -u +%T)] n=$n $name: $*" >&2
  local rc=0
  /usr/bin/time -v -o "$OUT/logs/$n-$name.time" "$@" > "$OUT/logs/$n-$name.out" 2> "$OUT/logs/$n-$name.log" || rc=$?
  local secs kib
  secs=$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]; print s}' "$OUT/logs/$n-$name.time")
  kib=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$OUT/logs/$n-$name.time")
  printf '%s\t%s\t%s\t%d\t%d\n' "$n" "$name" "$secs" $((kib / 1024)) "$rc" >> "$OUT/stages.tsv"
  echo "[$(date -u +%T)] n=$n $name: exit $rc, ${secs}s, peak RSS $((kib / 1024)) MiB" >&2
}

for n in $SIZES; do
  data="$OUT/data$n"
  [ -d "$data/train" ] || /usr/bin/python3 bench/experiments/synthetic_imagefolder.py "$data" "$n" --size "$SIZE" --test 500
  run="$OUT/run$n"
  stage "$n" train $I train --data "imagefolder:$data" --model resnet18 --pretrained imagenet --freeze "$FREEZE" \
    --epochs "$EPOCHS" --batch-size 64 --drop-last --lr 0.01 --seed 0 --threads "$THREADS" --out "$run" --overwrite --quiet
  stage "$n" detect $I detect-mislabeled --run "$run" --methods trak,ekfac-last,tracin-last --top 16 --threads "$THREADS" --quiet
  stage "$n" explain $I explain --run "$run" --methods trak --queries test --query 0 --top 8 --threads "$THREADS" --quiet
done
echo "| n (training images) | stage | seconds | peak RSS MiB | exit |"
echo "|---:|---|---:|---:|---:|"
awk -F'\t' '{printf "| %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5}' "$OUT/stages.tsv"
