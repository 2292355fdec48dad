#!/usr/bin/env bash
# Unrolled attribution against the other methods under both LDS protocols: same-order retraining
# (the run replayed with the removed examples weighted 0) and seed-averaged retraining (each subset
# trained on its own with a derived seed). Fashion-MNIST (Debian's dataset-fashion-mnist), 5,000
# class-balanced training images, the first QUERIES test images as queries, margin target.
# Usage: bench/experiments/unrolled-lds.sh [OUT_DIR] [STAGE...]
#   stages: train (both recipes), same95, seeds95, same50, seeds50, smooth95, gentle95, gentle50
#   (default: all but the gentle ones, in that order; smooth and gentle run both protocols)
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
esac; done
