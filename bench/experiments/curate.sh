#!/usr/bin/env bash
# Data curation by attribution (D3M; bench/README.md, "Data curation"). Needs Debian's dataset-fashion-mnist.
# Usage: bench/experiments/curate.sh [OUT_DIR] [mislabel|tinted|budget|all] (default runs/curate, all)
# Each case runs in its own hold of the lock file $INFLUENCE_CPU_LOCK (default /tmp/influence-cpu.lock);
# the wall time inside the lock is printed. On an otherwise idle 2-core machine a retraining takes
# 1-2 s, each case a few minutes; under heavy load (load average 10-20) about 10 times that.
# INFLUENCE: the CLI to run (e.g. "dotnet /copy/of/influence.dll"); default: build this checkout's.
# SEEDS: the retraining seeds (default 0,...,9).
# Models train properly: Mlp (128 hidden), 4,000 class-balanced images, 15 epochs, one-cycle schedule
# (lr 0.1 on grey Fashion-MNIST: 83% test accuracy with 10% flipped labels; lr 0.02 on the tinted RGB
# images, where 0.05 is unstable: 88% train, 78% balanced test), and every retraining runs the full
# run's number of optimiser steps (--retrain-budget steps, the default), so removing examples does
# not also remove steps.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-runs/curate}
CASE=${2:-all}
if [[ -z ${INFLUENCE:-} ]]; then dotnet build -c Release src/InfluenceSharp.Cli >/dev/null; fi
export I=${INFLUENCE:-"dotnet src/InfluenceSharp.Cli/bin/Release/net10.0/influence.dll"}
SEEDS=${SEEDS:-0,1,2,3,4,5,6,7,8,9}
LOCK=${INFLUENCE_CPU_LOCK:-/tmp/influence-cpu.lock}
TRAIN="--model mlp --train-count 4000 --epochs 15 --schedule onecycle --seed 0 --quiet"
held() { flock "$LOCK" bash -euo pipefail -c "SECONDS=0; $1; echo \"$2: \$SECONDS s inside the lock\""; }

# 1. Mislabel case: 10% of the 4,000 training labels flipped (400); validation = the first 1,000
#    test images, test = the other 9,000; objective = mean validation loss; remove the 200 / 400
#    most detrimental (400 = the number of flipped labels) against 200 / 400 random, and the
#    oracle flipped-labels (exactly the 400 flipped).
MIS="\$I curate --run $OUT/mislabel --validation test:1000 --objective mean --methods ekfac,trak --remove 200,400 --seeds $SEEDS --quiet"
if [[ $CASE == all || $CASE == mislabel ]]; then
  held "[[ -f $OUT/mislabel/run.json ]] || \$I train --data fashion-mnist $TRAIN --lr 0.1 --corrupt 0.1 --out $OUT/mislabel; $MIS" "mislabel case"
fi
# 2. Tinted case: tinted Fashion-MNIST (the tint agrees with the class parity for 95% of training
#    images, balanced in test), 4,000 training images; validation = the first 2,000 test images,
#    test = the other 8,000; groups = class x tint (20); objective = d3m (TRAK as in D3M, and EK-FAC);
#    baselines include group balancing by subsampling (balance) and by upsampling (balance-upsample).
if [[ $CASE == all || $CASE == tinted ]]; then
  held "[[ -f $OUT/tinted/run.json ]] || \$I train --data tinted:fashion-mnist $TRAIN --lr 0.02 --out $OUT/tinted
    \$I curate --run $OUT/tinted --validation test:2000 --groups 'class*tint' --objective d3m --methods trak,ekfac --remove 200,600,1000 --seeds $SEEDS --quiet" "tinted case"
fi
# 3. The budget's effect: the mislabel case retrained with the run's epochs over each smaller set
#    (--retrain-budget epochs, what curate did before: removing k examples also removes steps).
if [[ $CASE == all || $CASE == budget ]]; then
  held "$MIS --retrain-budget epochs --out $OUT/mislabel/curate-epochs" "mislabel case, epochs budget"
fi
for r in "$OUT"/*/; do $I report --run "$r" >/dev/null || true; done
