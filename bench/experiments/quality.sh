#!/usr/bin/env bash
# Quality experiments (mislabel detection on the full Fashion-MNIST, LDS on the
# 5,000-train / 500-query setting, counterfactual removal). Needs Debian's dataset-fashion-mnist.
# Usage: bench/experiments/quality.sh [OUT_DIR]   (default runs/quality; must be new); about 20-40 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-runs/quality}
dotnet build -c Release src/InfluenceSharp.Cli >/dev/null
I="dotnet src/InfluenceSharp.Cli/bin/Release/net10.0/influence.dll"

# 1. Mislabel detection: SmallCnn, full 60,000 training images, 10% of labels corrupted.
$I train --data fashion-mnist --model smallcnn --epochs 6 --corrupt 0.1 --out "$OUT/detect-smallcnn"
$I detect-mislabeled --run "$OUT/detect-smallcnn" --methods ekfac,kfac,diagonal,identity,tracin-last,tracin-proj,trak

# 2. LDS: 5,000 training examples (class-balanced), the first 500 test images as queries.
for m in logreg mlp; do
  $I train --data fashion-mnist --model "$m" --train-count 5000 --epochs 10 --out "$OUT/lds-$m"
  $I evaluate lds --run "$OUT/lds-$m" --methods ekfac,kfac,diagonal,identity,tracin,trak --subsets 100 --query-count 500
  $I evaluate lds --run "$OUT/lds-$m" --methods trak --ensemble 10 --subsets 100 --query-count 500
done

# 3. Counterfactual removal for the Mlp run.
$I evaluate remove --run "$OUT/lds-mlp" --methods ekfac --remove-counts 50,100,200,500 --seeds 0,1,2 --query-count 100
for r in "$OUT"/*/; do $I report --run "$r"; done
