#!/usr/bin/env bash
# Seed 004's workflow with the faithful ImageNet ResNet-18 (`--model resnet18 --pretrained imagenet`:
# the CNTK network of the Microsoft.ML.DnnImageFeaturizer.ResNet18 package with its own preprocessing)
# on Fashion-MNIST exported as an RGB image folder at 64x64, 10% of the training labels flipped by
# `train --corrupt 0.1` (recorded in RUN/corruption.json):
#   probe     frozen-backbone linear probe (only fc trained), ImageNet weights vs random weights
#   finetune  fine-tune from ImageNet (FREEZE_FT frozen, their outputs cached per image by
#             --cache-frozen-prefix, which the run records, so every retraining below reads the cache): test accuracy
#   scratch   the same network shape trained from scratch (torchvision's resnet18, all layers): test accuracy
#   detect    detect-mislabeled on the fine-tuned run with METHODS (found at 10%/20%, AUC)
#   remove    evaluate remove (most helpful / most harmful / random k for the test queries), SEEDS_PER_RUN
#             seeds per invocation (OUT/finetune/run/remove-seedN or remove-seedsA-B); every retraining is
#             logged as it ends, seed by seed, and the summary counts every whole seed in the logs, so that
#             invocations may run in parallel and be stopped
#   scratch-detect  detection on the from-scratch run with SCRATCH_METHODS
#   summary   the tables of bench/README.md (mean and standard error of the removal deltas over seeds)
#
# Usage: bench/experiments/seed004-faithful.sh [STEP ...] (default: probe finetune scratch detect remove summary;
#   steps may run as parallel invocations, e.g. one per step)
#   OUT (default runs/seed004-faithful), SIZE, TRAIN, TEST, SEEDS, ... below.
# Every stage runs under `/usr/bin/time -v` (wall time and peak RSS to OUT/stages.tsv; stderr in
# OUT/logs/<stage>.log, stdout in OUT/logs/<stage>.out) and `nice -n 10`.
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
OUT=$(realpath -m "${OUT:-runs/seed004-faithful}")
SIZE=${SIZE:-64}
TRAIN=${TRAIN:-5000}             # training images (class-balanced)
TEST=${TEST:-1000}               # test images (also the removal queries)
PROBE_TRAIN=${PROBE_TRAIN:-2000} # probe: class-balanced subset of the training images (--train-count)
PROBE_EPOCHS=${PROBE_EPOCHS:-3}
FT_EPOCHS=${FT_EPOCHS:-1}
SC_EPOCHS=${SC_EPOCHS:-1}
FREEZE_PROBE=conv1,bn1,layer1,layer2,layer3,layer4
FREEZE_FT=${FREEZE_FT:-conv1,bn1,layer1,layer2,layer3,layer4.0,layer4.1}   # trains layer4.2 (CNTK's third block) and fc
METHODS=${METHODS:-trak,ekfac,ekfac-last,tracin,tracin-last}
SCRATCH_METHODS=${SCRATCH_METHODS:-trak,ekfac-last,tracin-last}
REMOVE_METHOD=${REMOVE_METHOD:-trak}
REMOVE_K=${REMOVE_K:-500}        # 10% of the training set
SEEDS=${SEEDS:-0 1 2 3 4 5 6 7}
SEEDS_PER_RUN=${SEEDS_PER_RUN:-1}   # seeds per evaluate-remove invocation
THREADS=${THREADS:-2}
I=${INFLUENCE_CLI:-"dotnet $ROOT/src/InfluenceSharp.Cli/bin/Release/net10.0/influence.dll"}   # INFLUENCE_CLI: a pinned build
DATA="$OUT/data"
FT="$OUT/finetune/run"; SC="$OUT/scratch/run"
mkdir -p "$OUT/logs"

# stage NAME command...: GNU time -v; appends "name seconds peak_rss_MiB exit" to OUT/stages.tsv.
stage() {
  local name=$1; shift
  echo "[$(date -u +%T)] $name: $*" >&2
  local rc=0
  nice -n 10 /usr/bin/time -v -o "$OUT/logs/$name.time" "$@" > "$OUT/logs/$name.out" 2> "$OUT/logs/$name.log" || rc=$?
  local secs kib
  secs=$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]; print s}' "$OUT/logs/$name.time")
  kib=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$OUT/logs/$name.time")
  printf '%s\t%s\t%d\t%d\n' "$name" "$secs" $((${kib:-0} / 1024)) "$rc" >> "$OUT/stages.tsv"
  echo "[$(date -u +%T)] $name: exit $rc, ${secs}s, peak RSS $((${kib:-0} / 1024)) MiB" >&2
  [ "$rc" = 0 ] || tail -n 5 "$OUT/logs/$name.log" >&2
  return "$rc"
}

export_data() {
  [ -f "$DATA/export.json" ] || /usr/bin/python3 bench/experiments/export_fashion_imagefolder.py "$DATA" --size "$SIZE" \
    --train-count "$TRAIN" --test-count "$TEST" --seed 4
}

probe() { probe_imagenet; probe_random; }

probe_imagenet() {
  export_data
  stage probe-imagenet $I train --data "imagefolder:$DATA" --model resnet18 --pretrained imagenet --freeze $FREEZE_PROBE \
    --train-count "$PROBE_TRAIN" --epochs "$PROBE_EPOCHS" --batch-size 64 --lr 0.01 --seed 0 --threads "$THREADS" --out "$OUT/probe/imagenet" --overwrite
}

probe_random() {
  export_data
  stage probe-random $I train --data "imagefolder:$DATA" --model resnet18 --freeze $FREEZE_PROBE \
    --train-count "$PROBE_TRAIN" --epochs "$PROBE_EPOCHS" --batch-size 64 --lr 0.01 --seed 0 --threads "$THREADS" --out "$OUT/probe/random" --overwrite
}

finetune() {
  export_data
  stage ft-train $I train --data "imagefolder:$DATA" --model resnet18 --pretrained imagenet --freeze "$FREEZE_FT" \
    --epochs "$FT_EPOCHS" --batch-size 64 --drop-last --lr 0.01 --cache-frozen-prefix --corrupt 0.1 --corrupt-seed 4 --seed 0 --threads "$THREADS" --out "$FT" --overwrite
}

scratch() {
  export_data
  stage sc-train $I train --data "imagefolder:$DATA" --model resnet18 \
    --epochs "$SC_EPOCHS" --batch-size 64 --drop-last --lr 0.03 --corrupt 0.1 --corrupt-seed 4 --seed 0 --threads "$THREADS" --out "$SC" --overwrite
}

detect() {
  # one method per invocation: each has its own time and peak memory (results merge in RUN/detect)
  for m in ${METHODS//,/ }; do
    stage "ft-detect-$m" $I detect-mislabeled --run "$FT" --methods "$m" --top 32 --out "$FT/detect-$m" --threads "$THREADS" || true
  done
}

remove() {
  # SEEDS_PER_RUN seeds per invocation: the attribution's training features are stored in the run by the
  # first and reused; retrainings go seed by seed and each is logged when it ends (OUT/logs/ft-remove-*.log),
  # so the summary counts every whole seed of an interrupted invocation too.
  local seeds=($SEEDS) i
  for ((i = 0; i < ${#seeds[@]}; i += SEEDS_PER_RUN)); do
    local group=("${seeds[@]:i:SEEDS_PER_RUN}")
    local name="seed${group[0]}"; [ ${#group[@]} -gt 1 ] && name="seeds${group[0]}-${group[-1]}"
    [ -f "$FT/remove-$name/removal.json" ] && continue
    local list; list=$(IFS=,; echo "${group[*]}")
    stage "ft-remove-$name" $I evaluate remove --run "$FT" --methods "$REMOVE_METHOD" --remove-counts "$REMOVE_K" \
      --seeds "$list" --query-count "$TEST" --out "$FT/remove-$name" --threads "$THREADS" || true
  done
}

scratch_detect() {
  for m in ${SCRATCH_METHODS//,/ }; do
    stage "sc-detect-$m" $I detect-mislabeled --run "$SC" --methods "$m" --top 32 --out "$SC/detect-$m" --threads "$THREADS" || true
  done
}

summary() { /usr/bin/python3 bench/experiments/seed004_faithful_summary.py "$OUT"; }

[ $# -gt 0 ] || set -- probe finetune scratch detect remove summary
for step in "$@"; do
  case "$step" in
    probe) probe ;; probe-imagenet) probe_imagenet ;; probe-random) probe_random ;; finetune) finetune ;; scratch) scratch ;; detect) detect ;; remove) remove ;;
    scratch-detect) scratch_detect ;; summary) summary ;; export) export_data ;;
    *) echo "unknown step $step (probe finetune detect remove scratch-detect summary export)" >&2; exit 2 ;;
  esac
done
