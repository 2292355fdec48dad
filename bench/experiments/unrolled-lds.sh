#!/usr/bin/env bash
# Unrolled attribution against the other methods under both LDS protocols: same-order retraining
# (the run replayed with the removed examples weighted 0) and seed-averaged retraining (each subset
# trained on its own with a derived seed). Fashion-MNIST (Debian's dataset-fashion-mnist), 5,000
# class-balanced training images, the first QUERIES test images as queries, margin target.
# Usage: bench/experiments/unrolled-lds.sh [OUT_DIR] [STAGE...]
#   stages: train (both recipes), same95, seeds95, same50, seeds50, smooth95, gentle95, gentle50,
#   gentle-full, gentle-ifcg, cnn95, cnn-more
#   (default: all but the gentle and cnn ones, in that order; smooth and gentle run both protocols)
# gentle-full: the issue's full table on the gentle run: both protocols at alpha 0.95 and 0.5 with
#   unrolled, ekfac, tracin and trak --ensemble 10 (TRAK-10), then trak --ensemble 50 (TRAK-50) in a copy
#   of each cache (subset files hard-linked, so nothing is retrained; a cache keeps one row per method).
# gentle-ifcg: if-cg (Gauss-Newton curvature: the true Hessian of this unconverged run is indefinite)
#   on the first IFCG_QUERIES queries with at most IFCG_ITERS CG iterations, same-order, alpha 0.95
#   (its own cache: a cache's subset files hold the margins of its query set).
# cnn95: SmallCnn on the same 5,000 images (CNN_EPOCHS epochs, batch 128, lr CNN_LR, momentum 0.9, drop-last),
#   same-order at alpha 0.95 with CNN_METHODS on CNN_QUERIES queries x CNN_SUBSETS subsets;
#   cnn-more: the same run and queries under the seed protocol at 0.95, then both protocols at 0.5
#   (unrolled's derivatives are read from the run's store, written by cnn95).
# Recipes: "protocol" is the LDS protocol's Mlp recipe (10 epochs, batch 128, lr 0.05, momentum 0.9,
# weight decay 5e-4, constant); "smooth" the same with lr 0.01; "gentle" with lr 0.005.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-runs/unrolled-lds}; shift || true
STAGES=${*:-train same95 seeds95 same50 seeds50 smooth95}
if [ -z "${INFLUENCE_CLI:-}" ]; then
  dotnet build -c Release src/InfluenceSharp.Cli >/dev/null || exit 1
  INFLUENCE_CLI="dotnet src/InfluenceSharp.Cli/bin/Release/net10.0/influence.dll"
fi
I="$INFLUENCE_CLI"
T="--threads ${THREADS:-1}"
SUBSETS=${SUBSETS:-100}
QUERIES=${QUERIES:-500}
METHODS=${METHODS:-unrolled,ekfac,tracin,trak}
COMMON="--subsets $SUBSETS --query-count $QUERIES --target margin $T"
IFCG_QUERIES=${IFCG_QUERIES:-100}
IFCG_ITERS=${IFCG_ITERS:-30}
CNN_EPOCHS=${CNN_EPOCHS:-5}
CNN_LR=${CNN_LR:-0.005}
CNN_QUERIES=${CNN_QUERIES:-100}
CNN_SUBSETS=${CNN_SUBSETS:-100}
CNN_QUERY_OFFSET=${CNN_QUERY_OFFSET:-0}   # cnn95 only: queries K..K+N-1 (a cache of its own when K > 0)
CNN_METHODS=${CNN_METHODS:-unrolled,ekfac,tracin}
timed() { local t0=$SECONDS; "$@"; local rc=$?; echo "wall $((SECONDS - t0)) s (rc $rc): $*"; return $rc; }

for s in $STAGES; do case $s in
train)
  [ -f "$OUT/mlp/run.json" ] || timed $I train --data fashion-mnist --model mlp --train-count 5000 --epochs 10 --out "$OUT/mlp" $T
  [ -f "$OUT/mlp-smooth/run.json" ] || timed $I train --data fashion-mnist --model mlp --train-count 5000 --epochs 10 --lr 0.01 --out "$OUT/mlp-smooth" $T
  ;;
same95) timed $I evaluate lds --run "$OUT/mlp" --methods "$METHODS" --alpha 0.95 --retrain same-order --out "$OUT/mlp/lds-same-95" $COMMON ;;
seeds95) timed $I evaluate lds --run "$OUT/mlp" --methods "$METHODS" --alpha 0.95 --out "$OUT/mlp/lds-seeds-95" $COMMON ;;
same50) timed $I evaluate lds --run "$OUT/mlp" --methods "$METHODS" --alpha 0.5 --retrain same-order --out "$OUT/mlp/lds-same-50" $COMMON ;;
seeds50) timed $I evaluate lds --run "$OUT/mlp" --methods "$METHODS" --alpha 0.5 --out "$OUT/mlp/lds-seeds-50" $COMMON ;;
smooth95)
  timed $I evaluate lds --run "$OUT/mlp-smooth" --methods "$METHODS" --alpha 0.95 --retrain same-order --out "$OUT/mlp-smooth/lds-same-95" $COMMON
  timed $I evaluate lds --run "$OUT/mlp-smooth" --methods "$METHODS" --alpha 0.95 --out "$OUT/mlp-smooth/lds-seeds-95" $COMMON
  ;;
gentle95|gentle50)
  a=0.${s#gentle}
  [ -f "$OUT/mlp-gentle/run.json" ] || timed $I train --data fashion-mnist --model mlp --train-count 5000 --epochs 10 --lr 0.005 --out "$OUT/mlp-gentle" $T
  timed $I evaluate lds --run "$OUT/mlp-gentle" --methods "$METHODS" --alpha $a --retrain same-order --out "$OUT/mlp-gentle/lds-same-${s#gentle}" $COMMON
  timed $I evaluate lds --run "$OUT/mlp-gentle" --methods "$METHODS" --alpha $a --out "$OUT/mlp-gentle/lds-seeds-${s#gentle}" $COMMON
  ;;
gentle-full)
  G="$OUT/mlp-gentle"
  [ -f "$G/run.json" ] || timed $I train --data fashion-mnist --model mlp --train-count 5000 --epochs 10 --lr 0.005 --out "$G" $T
  for a in 95 50; do for p in same seeds; do
    d="$G/lds-full-$p-$a"; r=""; [ $p = same ] && r="--retrain same-order"
    timed $I evaluate lds --run "$G" --methods unrolled,ekfac,tracin,trak --ensemble 10 --alpha 0.$a $r --out "$d" $COMMON
    mkdir -p "$d-trak50" && cp -al "$d"/subset-*.safetensors "$d-trak50/" 2>/dev/null
    cp "$d/lds.json" "$d-trak50/"
    timed $I evaluate lds --run "$G" --methods trak --ensemble 50 --alpha 0.$a $r --out "$d-trak50" $COMMON
  done; done
  ;;
gentle-ifcg)
  G="$OUT/mlp-gentle"
  timed $I evaluate lds --run "$G" --methods if-cg --hessian gauss-newton --cg-iters $IFCG_ITERS --alpha 0.95 --retrain same-order \
    --out "$G/lds-ifcg-same-95" --subsets $SUBSETS --query-count $IFCG_QUERIES --target margin $T
  ;;
cnn95)
  C="$OUT/cnn"
  [ -f "$C/run.json" ] || timed $I train --data fashion-mnist --model smallcnn --train-count 5000 --epochs $CNN_EPOCHS --lr $CNN_LR --drop-last --out "$C" $T
  o=""; [ "$CNN_QUERY_OFFSET" = 0 ] || o="-from$CNN_QUERY_OFFSET"
  timed $I evaluate lds --run "$C" --methods "$CNN_METHODS" --alpha 0.95 --retrain same-order --out "$C/lds-same-95$o" \
    --subsets $CNN_SUBSETS --query-count $CNN_QUERIES --query-offset $CNN_QUERY_OFFSET --target margin $T
  ;;
cnn-more)
  C="$OUT/cnn"
  for pa in seeds-95 same-50 seeds-50; do
    r=""; [ ${pa%-*} = same ] && r="--retrain same-order"
    timed $I evaluate lds --run "$C" --methods "$CNN_METHODS" --alpha 0.${pa#*-} $r --out "$C/lds-$pa" \
      --subsets $CNN_SUBSETS --query-count $CNN_QUERIES --target margin $T
  done
  ;;
esac; done
