#!/usr/bin/env bash
# Peak RSS against the number of training images: a pretrained ResNet-18 fine-tuned on a synthetic
# RGB PNG image folder of N training images (N = 2,000, 8,000, 32,000; 500 test images), then
# detect-mislabeled with TRAK, EK-FAC (last layer) and TracIn (last layer), and one TRAK explanation.
# Every stage runs as its own process under GNU time; peak RSS = its maximum resident set size.
#
# Usage: bench/experiments/stream-rss.sh [OUT_DIR] (default /tmp/stream-rss)
#   SIZES="2000 8000 32000" SIZE=32 (image side) EPOCHS=1 THREADS=1
#   FREEZE: the frozen layers (default: the whole backbone, so fine-tuning trains fc; attribution
#   tracks the trainable layers). INFLUENCE_CLI: the tool to run (default: this checkout's Release build).
# Every second the stage's /proc/PID/status is sampled (OUT/logs/N-STAGE.rss: seconds, VmRSS,
# RssAnon, RssFile in KiB), so the peak can be split into anonymous memory and file pages.
# Output: OUT/stages.tsv (n, stage, seconds, peak RSS MiB, exit, max RssAnon MiB, max RssFile MiB,
# load average at the end) and a markdown table on stdout.
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
OUT=$(realpath -m "${1:-/tmp/stream-rss}")
SIZES=${SIZES:-"2000 8000 32000"}
SIZE=${SIZE:-32}
EPOCHS=${EPOCHS:-1}
THREADS=${THREADS:-1}
FREEZE=${FREEZE:-conv1,bn1,layer1,layer2,layer3,layer4}
I=${INFLUENCE_CLI:-"dotnet $ROOT/src/InfluenceSharp.Cli/bin/Release/net10.0/influence.dll"}
mkdir -p "$OUT"

stage() {
  local n=$1 name=$2; shift 2
  mkdir -p "$OUT/logs"
  echo "[$(date -u +%T)] n=$n $name: $*" >&2
  local rc=0 rss="$OUT/logs/$n-$name.rss"
  /usr/bin/time -v -o "$OUT/logs/$n-$name.time" "$@" > "$OUT/logs/$n-$name.out" 2> "$OUT/logs/$n-$name.log" &
  local tp=$! t0=$SECONDS child
  : > "$rss"
  while kill -0 "$tp" 2>/dev/null; do
    child=$(pgrep -P "$tp" | head -n 1)
    [ -n "$child" ] && awk -v t=$((SECONDS - t0)) '/^VmRSS|^RssAnon|^RssFile/ {v[$1]=$2} END {if (v["VmRSS:"] != "") printf "%d\t%s\t%s\t%s\n", t, v["VmRSS:"], v["RssAnon:"], v["RssFile:"]}' "/proc/$child/status" >> "$rss" 2>/dev/null
    sleep 1
  done
  wait "$tp" || rc=$?
  local secs kib anon file
  secs=$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]; print s}' "$OUT/logs/$n-$name.time")
  kib=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$OUT/logs/$n-$name.time")
  anon=$(awk '$3 > m {m = $3} END {print int(m / 1024)}' "$rss")
  file=$(awk '$4 > m {m = $4} END {print int(m / 1024)}' "$rss")
  printf '%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\n' "$n" "$name" "$secs" $((kib / 1024)) "$rc" "$anon" "$file" "$(cut -d' ' -f1 /proc/loadavg)" >> "$OUT/stages.tsv"
  echo "[$(date -u +%T)] n=$n $name: exit $rc, ${secs}s, peak RSS $((kib / 1024)) MiB (anon $anon, file $file), load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
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
echo "| n (training images) | stage | seconds | peak RSS MiB | exit | max RssAnon MiB | max RssFile MiB | load at end |"
echo "|---:|---|---:|---:|---:|---:|---:|---:|"
awk -F'\t' '{printf "| %s | %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6, $7, $8}' "$OUT/stages.tsv"
