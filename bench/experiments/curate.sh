#!/usr/bin/env bash
# Data curation by attribution (issue 11, seed 004, D3M). Needs Debian's dataset-fashion-mnist.
# Usage: bench/experiments/curate.sh [OUT_DIR] [mislabel|tinted|all]   (default runs/curate, all)
# The chosen cases run in one hold of the lock file $INFLUENCE_CPU_LOCK (default /tmp/influence-cpu.lock) on the shared machine (about
# 10-15 minutes for both on 2 cores); the wall time of each case inside the lock is printed.
# INFLUENCE: the CLI to run (e.g. "dotnet /copy/of/influence.dll"); default: build this checkout's.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-runs/curate}
CASE=${2:-all}
if [[ -z ${INFLUENCE:-} ]]; then dotnet build -c Release src/InfluenceSharp.Cli >/dev/null; fi
export I=${INFLUENCE:-"dotnet src/InfluenceSharp.Cli/bin/Release/net10.0/influence.dll"} OUT CASE

flock "${INFLUENCE_CPU_LOCK:-/tmp/influence-cpu.lock}" bash -euo pipefail -c '
# 1. Mislabel case: Mlp (128 hidden), 3,000 class-balanced Fashion-MNIST training images, 10% of
#    labels flipped; validation = the first 1,000 test images, test = the other 9,000; objective =
#    mean validation loss; remove the 100/200/300 most detrimental (300 = the number of flipped labels).
if [[ $CASE == all || $CASE == mislabel ]]; then
  SECONDS=0
  $I train --data fashion-mnist --model mlp --train-count 3000 --epochs 10 --corrupt 0.1 --seed 0 --out "$OUT/mislabel" --quiet
  $I curate --run "$OUT/mislabel" --validation test:1000 --objective mean --methods ekfac,tracin-last --remove 100,200,300 --seeds 3
  echo "mislabel case wall time (inside the lock): $SECONDS s"
fi
# 2. Tinted case: Mlp (128 hidden, lr 0.01) on tinted Fashion-MNIST (the tint agrees with the class
#    parity for 95% of training images, balanced in test), 3,000 training images; validation = the
#    first 2,000 test images, test = the other 8,000; groups = class x tint (20); objective = d3m.
if [[ $CASE == all || $CASE == tinted ]]; then
  SECONDS=0
  $I train --data tinted:fashion-mnist --model mlp --train-count 3000 --epochs 10 --lr 0.01 --seed 0 --out "$OUT/tinted" --quiet
  $I curate --run "$OUT/tinted" --validation test:2000 --groups "class*tint" --objective d3m --methods ekfac,trak --remove 100,300,600 --seeds 3
  echo "tinted case wall time (inside the lock): $SECONDS s"
fi
'
for r in "$OUT"/*/; do $I report --run "$r" >/dev/null; done
