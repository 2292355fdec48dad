#!/usr/bin/env bash
# Can an influence-function method reach the detection bar of bench/README.md's quality section (>= 80% of the
# flipped labels in the top 10%, >= 97% in the top 20%)? That section's recipe on Fashion-MNIST: SmallCnn,
# all 60,000 training images, 10% of labels flipped, one-cycle schedule, 10 epochs. Each variant is a
# detect-mislabeled run of its own (OUT/RUN/detect-VARIANT/detection.json); a summary table at the end.
# Usage: bench/experiments/detect-if.sh [OUT_DIR] [VARIANT...]   (needs Debian's dataset-fashion-mnist)
# Every heavy command runs under the shared CPU lock (INFLUENCE_CPU_LOCK, default /tmp/influence-cpu.lock).
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-runs/detect-if}; shift || true
VARIANTS=${*:-baseline epochs-even empirical damping fc-all fc-last identity-all tracin-last}
LOCK=${INFLUENCE_CPU_LOCK:-/tmp/influence-cpu.lock}
if [ -z "${INFLUENCE_CLI:-}" ]; then
  dotnet build -c Release src/InfluenceSharp.Cli >/dev/null || exit 1
  INFLUENCE_CLI="dotnet src/InfluenceSharp.Cli/bin/Release/net10.0/influence.dll"
fi
I="$INFLUENCE_CLI"
RUN="$OUT/smallcnn-onecycle"
timed() { local t0=$SECONDS; flock "$LOCK" "$@" > /dev/null; local rc=$?; echo "$((SECONDS - t0)) s (rc $rc): ${*:2}"; }

[ -f "$RUN/run.json" ] || timed $I train --data fashion-mnist --model smallcnn --epochs 10 --schedule onecycle --corrupt 0.1 --out "$RUN" --quiet

detect() { local name=$1; shift; [ -f "$RUN/detect-$name/detection.json" ] || timed $I detect-mislabeled --run "$RUN" --out "$RUN/detect-$name" --quiet "$@"; }
for v in $VARIANTS; do case $v in
  baseline)     detect baseline --methods ekfac ;;                                   # the final model, true Fisher, heuristic damping
  epochs-even)  detect epochs-even --methods ekfac --if-epochs 2,4,6,8,10 ;;         # summed over 5 checkpoints, each its own curvature, weighted by lr
  epochs-all)   detect epochs-all --methods ekfac --if-epochs all ;;
  empirical)    detect empirical --methods ekfac --fisher empirical ;;
  damping)      for d in 1e-4 1e-2 1; do detect damping-$d --methods ekfac --damping $d; done ;;
  fc-all)       detect fc-all --methods ekfac --layers fc --if-epochs all ;;          # fc1+fc2 only, all 10 checkpoints
  fc-last)      detect fc-last --methods ekfac --layers fc ;;
  fc2-last)     detect fc2-last --methods ekfac --layers fc2 ;;                       # the output layer only (tracin-last's layer)
  fc2-all)      detect fc2-all --methods ekfac --layers fc2 --if-epochs all ;;
  fc2-identity-all) detect fc2-identity-all --methods identity --layers fc2 --if-epochs all ;;   # = TracInCP on fc2 (a check of the sum)
  fc2-damping)  for d in 1e-3 1e-2 1e-1 1; do detect fc2-all-damping-$d --methods ekfac --layers fc2 --if-epochs all --damping $d; done ;;
  last-damping) for d in 1e-2 1e-1; do detect ekfac-last-damping-$d --methods ekfac-last --damping $d; done ;;
  fc2-empirical) detect fc2-all-empirical --methods ekfac --layers fc2 --if-epochs all --fisher empirical ;;
  identity-all) detect identity-all --methods identity --if-epochs all ;;            # gradient norms summed over checkpoints (TracIn on all layers)
  tracin-last)  detect tracin-last --methods tracin-last ;;
  trak-layouts) detect trak-kronecker --methods trak                                  # the three layouts at equal k (Kronecker: 4 layers x 16 x 64 = 4,096)
                for l in dense hadamard; do detect trak-$l --methods trak --proj-layout $l --proj-dim 4096; done ;;
esac; done

# Summary: found at 10% / 20%, ROC AUC, seconds, per variant.
printf "%-28s %8s %8s %8s %9s\n" variant "@10%" "@20%" AUC seconds
for f in "$RUN"/detect-*/detection.json; do
  /usr/bin/python3 - "$f" <<'PY'
import json, sys, os
for m in json.load(open(sys.argv[1])):
    fa = m["found_at"]
    print(f'{os.path.basename(os.path.dirname(sys.argv[1]))[7:] + ":" + m["method"]:<28} {100*fa["10%"]:7.1f}% {100*fa["20%"]:7.1f}% {m["roc_auc"]:8.3f} {m["seconds"]:9.1f}')
PY
done
