#!/usr/bin/env bash
# Fine-tuning workflow: a pretrained ResNet-18 fine-tuned on a 10-class image
# folder with 10% of its training labels flipped, then TRAK / EK-FAC / TracIn mislabel detection,
# proponent/opponent grids and removal of the most helpful / most harmful examples with retraining
# against random removal; the same architecture trained from scratch for comparison.
#
# Data: Fashion-MNIST (Debian's dataset-fashion-mnist) exported by export_fashion_imagefolder.py as
# RGB PNGs of SIZE x SIZE in DIR/train/<class>/ and DIR/test/<class>/ (class-balanced, seeded).
# The 10% label flips are made (seeded) and recorded (RUN/corruption.json) by `influence train --corrupt`.
#
# Usage: bench/experiments/seed004.sh [all|export|finetune|scratch|summary] [OUT_DIR]
#   (default all, runs/seed004). Measured: about 16 minutes for both parts on 2 cores (figures in
#   bench/README.md, "Seed 004: a pretrained ResNet-18 ...").
#   Every stage's wall time and peak RSS (GNU time) go to OUT/<part>/stages.tsv, its stderr (progress,
#   profiler tables) to OUT/<part>/logs/<stage>.log; `summary` prints the tables of bench/README.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
PART=${1:-all}
OUT=$(realpath -m "${2:-runs/seed004}")
# Sizes (chosen to fit ~30 minutes on 2 shared cores; see bench/README.md, "Seed 004: a pretrained ResNet-18 ...").
SIZE=${SIZE:-32}            # 32x32: 64x64 fine-tunes at the same ~40 ex/s here but costs 4x in attribution and retraining
TRAIN=${TRAIN:-500}         # training images (class-balanced, 50 per class)
TEST=${TEST:-400}           # test images
FT_EPOCHS=${FT_EPOCHS:-3}   # fine-tuning epochs
SC_EPOCHS=${SC_EPOCHS:-3}   # from-scratch epochs
RM_EPOCHS=${RM_EPOCHS:-3}   # epochs of each removal retraining (the full-data baseline is retrained the same way): as the run
FREEZE=conv1,bn1,layer1,layer2
METHODS=${METHODS:-trak,ekfac,tracin-last}   # exact `tracin` (layer3+layer4) now fits too: 0.9 GiB peak for 300 images at 32x32 (bench/README.md, "Memory-bounded per-example conv gradients"); it was ~24 GB
REMOVE_K=${REMOVE_K:-50}    # 10% of the training set
REMOVE_SEEDS=${REMOVE_SEEDS:-0,1,2}
QUERIES=${QUERIES:-$TEST}   # removal query set: the first N test images (the test folder is read class by class, so all of it)
THREADS=${THREADS:-2}
EXPLAIN=${EXPLAIN:-$((TEST / 10 * 0 + 3)),$((TEST / 10 * 3 + 3)),$((TEST / 10 * 5 + 3)),$((TEST / 10 * 9 + 3))}  # one test image of classes 0, 3, 5, 9

I=${INFLUENCE_CLI:-"dotnet $ROOT/src/InfluenceSharp.Cli/bin/Release/net10.0/influence.dll"}   # INFLUENCE_CLI: a pinned build
DATA="$OUT/data"

# stage PART NAME command...: runs the command under GNU time, appends "name seconds peak_rss_MiB" to
# OUT/PART/stages.tsv, keeps stderr in OUT/PART/logs/NAME.log and stdout in OUT/PART/logs/NAME.out.
stage() {
  local part=$1 name=$2; shift 2
  mkdir -p "$OUT/$part/logs"
  echo "[$(date -u +%T)] $part/$name: $*" >&2
  local rc=0
  /usr/bin/time -f "%e %M" -o "$OUT/$part/logs/$name.time" "$@" > "$OUT/$part/logs/$name.out" 2> "$OUT/$part/logs/$name.log" || rc=$?
  local secs kib
  read -r secs kib < <(tail -n 1 "$OUT/$part/logs/$name.time")
  printf '%s\t%s\t%d\t%d\n' "$name" "$secs" $((kib / 1024)) "$rc" >> "$OUT/$part/stages.tsv"
  echo "[$(date -u +%T)] $part/$name: exit $rc, ${secs}s, peak RSS $((kib / 1024)) MiB" >&2
  if [ "$rc" != 0 ]; then tail -n 5 "$OUT/$part/logs/$name.log" >&2; fi
  return "$rc"
}

export_data() {
  if [ ! -f "$DATA/export.json" ]; then
    /usr/bin/python3 bench/experiments/export_fashion_imagefolder.py "$DATA" --size "$SIZE" \
      --train-count "$TRAIN" --test-count "$TEST" --seed 4
  fi
}

# attribute PART RUN: detection, explanations, removal, report for one trained run.
attribute() {
  local part=$1 run=$2 epochs=$3
  # a failed stage is reported (stages.tsv, exit column) and the next one still runs
  stage "$part" detect $I detect-mislabeled --run "$run" --methods $METHODS --top 32 --threads "$THREADS" || true
  stage "$part" explain $I explain --run "$run" --methods trak --queries test --query "$EXPLAIN" --top 16 --threads "$THREADS" || true
  stage "$part" remove $I evaluate remove --run "$run" --methods trak --remove-counts "$REMOVE_K" \
    --seeds "$REMOVE_SEEDS" --query-count "$QUERIES" --epochs "$epochs" --threads "$THREADS" || true
  stage "$part" report $I report --run "$run" || true
}

finetune() {
  export_data
  rm -f "$OUT/finetune/stages.tsv"
  stage finetune train $I train --data "imagefolder:$DATA" --model resnet18 --pretrained imagenet --freeze $FREEZE \
    --epochs "$FT_EPOCHS" --batch-size 32 --drop-last --lr 0.01 --corrupt 0.1 --corrupt-seed 4 --seed 0 --threads "$THREADS" \
    --out "$OUT/finetune/run" --overwrite
  attribute finetune "$OUT/finetune/run" "$RM_EPOCHS"
}

scratch() {
  export_data
  rm -f "$OUT/scratch/stages.tsv"
  stage scratch train $I train --data "imagefolder:$DATA" --model resnet18 \
    --epochs "$SC_EPOCHS" --batch-size 32 --drop-last --lr 0.03 --corrupt 0.1 --corrupt-seed 4 --seed 0 --threads "$THREADS" \
    --out "$OUT/scratch/run" --overwrite
  attribute scratch "$OUT/scratch/run" "$RM_EPOCHS"
}

summary() {
  for part in finetune scratch; do
    [ -f "$OUT/$part/stages.tsv" ] || continue
    echo "## $part"
    cat "$OUT/$part/logs/train.out" "$OUT/$part/logs/train.log" | tr '\r' '\n' | grep -E "^final:|ex/s [0-9.]+s" || true
    echo "| stage | seconds | peak RSS MiB | exit |"; echo "|---|---:|---:|---:|"
    awk -F'\t' '{printf "| %s | %s | %s | %s |\n", $1, $2, $3, $4}' "$OUT/$part/stages.tsv"
    cat "$OUT/$part/logs/detect.out" 2>/dev/null || true
    cat "$OUT/$part/logs/remove.out" 2>/dev/null || true
  done
}

dotnet build -c Release src/InfluenceSharp.Cli > /dev/null || echo "build failed: using the existing build" >&2
case "$PART" in
  all) finetune; scratch; summary ;;
  export) export_data ;;
  finetune) finetune ;;
  scratch) scratch ;;
  summary) summary ;;
  *) echo "usage: $0 [all|export|finetune|scratch|summary] [OUT_DIR]" >&2; exit 2 ;;
esac
