#!/usr/bin/env bash
# Peak RSS of exact TracIn and EK-FAC over ResNet-18's layer3+layer4 (bench/README.md, "Memory-bounded per-example conv gradients"):
# the ImageNet ResNet-18 fine-tuned 2 epochs on an exported Fashion-MNIST image folder at 32x32 RGB,
# attribution by `detect-mislabeled` (self-influence) and `scores pairwise`, each under GNU time.
# Figures: bench/README.md, "Memory-bounded per-example conv gradients".
#
# Usage: bench/experiments/conv-memory.sh [OUT_DIR] (default /tmp/conv-memory); run it under the CPU lock.
#   NEW=<influence.dll> (default: this checkout's Release build), OLD=<influence.dll of another build>
#   (optional: then the "before" rows run too; the 48-image TracIn one crashed before the fix).
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=$(realpath -m "${1:-/tmp/conv-memory}")
NEW="dotnet ${NEW:-$PWD/src/InfluenceSharp.Cli/bin/Release/net10.0/influence.dll}"
mkdir -p "$OUT"
m() { local name=$1; shift; echo "[$(date -u +%T)] $name: $*"; /usr/bin/time -f "%e %M" -o "$OUT/$name.time" "$@" > "$OUT/$name.out" 2> "$OUT/$name.err"; local rc=$?
      local s k; read -r s k < <(tail -n 1 "$OUT/$name.time"); echo "RESULT $name rc=$rc secs=$s peakMiB=$((k / 1024))"; }
[ -f "$OUT/data/export.json" ] || /usr/bin/python3 bench/experiments/export_fashion_imagefolder.py "$OUT/data" --size 32 --train-count 300 --test-count 100 --seed 4 > /dev/null
for n in 300 24 48; do
  [ -f "$OUT/run$n/run.json" ] || m "train$n" $NEW train --data "imagefolder:$OUT/data" --model resnet18 --pretrained imagenet --freeze conv1,bn1,layer1,layer2 \
     --epochs 2 --batch-size 32 --lr 0.01 --corrupt 0.1 --corrupt-seed 4 --seed 0 --threads 2 --train-count $n --out "$OUT/run$n" --overwrite --quiet
done
L="--layers layer3,layer4 --threads 2 --quiet"
if [ -n "${OLD:-}" ]; then
  rm -rf "$OUT/run24/store" "$OUT/run48/store"
  m old-tracin-self-24 dotnet "$OLD" detect-mislabeled --run "$OUT/run24" --methods tracin $L --out "$OUT/det-old24"
  m old-tracin-self-48 dotnet "$OLD" detect-mislabeled --run "$OUT/run48" --methods tracin $L --out "$OUT/det-old48"
  m old-ekfac-self-300 dotnet "$OLD" detect-mislabeled --run "$OUT/run300" --methods ekfac $L --out "$OUT/det-oldek"
  rm -rf "$OUT/run24/store" "$OUT/run48/store"
fi
m new-tracin-self-24 $NEW detect-mislabeled --run "$OUT/run24" --methods tracin $L --out "$OUT/det-new24"
m new-tracin-self-48 $NEW detect-mislabeled --run "$OUT/run48" --methods tracin $L --out "$OUT/det-new48"
m new-tracin-self-300 $NEW detect-mislabeled --run "$OUT/run300" --methods tracin $L --out "$OUT/det-new300"
m new-tracin-pair-300 $NEW scores pairwise --run "$OUT/run300" --methods tracin $L --query-count 100 --out "$OUT/pair-new300"
m new-ekfac-self-300 $NEW detect-mislabeled --run "$OUT/run300" --methods ekfac $L --out "$OUT/det-newek"
