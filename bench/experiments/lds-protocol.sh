#!/usr/bin/env bash
# Measurements of the converged LDS protocol from the CLI, seed averaging and the noise
# ceiling, TRAK ensembles from existing checkpoints/runs. Fashion-MNIST (Debian's dataset-fashion-mnist),
# 5,000 class-balanced training images, the first 500 test images as queries, margin target.
# Usage: bench/experiments/lds-protocol.sh [OUT_DIR] [STAGE...]   (stages: lr mlp members layouts; default all)
# Every heavy command runs under the shared CPU lock in holds of at most ~19 minutes; LDS caches
# resume, so a command cut by the time limit is simply run again until it completes.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-runs/lds-protocol}; shift || true
STAGES=${*:-lr mlp members layouts}
LOCK=${INFLUENCE_CPU_LOCK:-/tmp/influence-cpu.lock}
HOLD=${HOLD_SECONDS:-1140}
# INFLUENCE_CLI: a built CLI to use instead of this checkout's (e.g. a copy that a rebuild cannot change mid-run).
if [ -z "${INFLUENCE_CLI:-}" ]; then
  dotnet build -c Release src/InfluenceSharp.Cli >/dev/null || exit 1
  INFLUENCE_CLI="dotnet src/InfluenceSharp.Cli/bin/Release/net10.0/influence.dll"
fi
# One torch thread by default: on a shared machine, OpenMP's second thread spinning against other
# processes made small-op work (L-BFGS) up to 18x slower (5 s vs 93 s for the same fit).
I="$INFLUENCE_CLI"
T="--threads ${THREADS:-1}"

# Runs "$@" under the lock, again and again (each hold at most $HOLD s) until it exits 0; prints wall seconds.
held() {
  local t0=$SECONDS rc
  while true; do
    flock "$LOCK" timeout "$HOLD" "$@"; rc=$?
    [ $rc -eq 0 ] && break
    [ $rc -ne 124 ] && { echo "FAILED ($rc): $*"; return $rc; }
    echo "(hold ended, resuming: $*)"
  done
  echo "wall $((SECONDS - t0)) s: $*"
}
COMMON="--subsets ${SUBSETS:-100} --query-count 500 --target margin"

for s in $STAGES; do case $s in
lr)
  # 1. Logistic regression trained to convergence: full-batch L-BFGS on mean CE + (1e-3/2)|theta|^2,
  #    gradient max-norm <= 1e-5; evaluate lds retrains every subset the same way (warm-started), and the
  #    influence functions tie their regularisation to L2 (if-*: H + 1e-3 I + 1e-6 I; ekfac: damping 1e-3).
  [ -f "$OUT/lr-conv/run.json" ] || held $I train --data fashion-mnist --model logreg --train-count 5000 --weight-decay 1e-3 --lbfgs-tol 1e-5 --out "$OUT/lr-conv" $T
  held $I evaluate lds --run "$OUT/lr-conv" --methods ekfac,if-explicit,trak $COMMON $T
  held $I evaluate lds --run "$OUT/lr-conv" --methods trak --ensemble 10 $COMMON $T
  ;;
mlp)
  # 2. Mlp (SGD, 10 epochs): 3 seeds per subset; the output also gives LDS against the first seed's
  #    models only (the one-seed protocol) and the noise ceiling (seed 0's models predicting seed 1's).
  [ -f "$OUT/mlp/run.json" ] || held $I train --data fashion-mnist --model mlp --train-count 5000 --epochs 10 --out "$OUT/mlp" $T
  held $I evaluate lds --run "$OUT/mlp" --methods ekfac,trak --seeds-per-subset 3 --subsets ${MLP_SUBSETS:-50} --query-count 500 --target margin --out "$OUT/mlp/lds-3seeds" $T
  ;;
members)
  # 3. TRAK ensembles from models already there: checkpoints of the one Mlp run (--member-epochs), and
  #    runs (the --ensemble models in RUN/ensemble/seed-K passed as --members: 5 runs x epochs 9,10), against
#    the 3-seed targets.
  L="--seeds-per-subset 3 --subsets ${MLP_SUBSETS:-50} --query-count 500 --target margin --out $OUT/mlp/lds-3seeds"
  held $I evaluate lds --run "$OUT/mlp" --methods trak --member-epochs 6,7,8,9,10 $L $T
  held $I evaluate lds --run "$OUT/mlp" --methods trak --member-epochs all $L $T
  held $I evaluate lds --run "$OUT/mlp" --methods trak --ensemble 5 $L $T
  M=$(for k in 1 2 3 4; do printf "%s," "$OUT/mlp/ensemble/seed-$k"; done); M=${M%,}
  held $I evaluate lds --run "$OUT/mlp" --methods trak --members "$M" --member-epochs 9,10 $L $T
  held $I evaluate lds --run "$OUT/mlp" --methods trak --members "$M" --member-epochs all $L $T     # TRAK-50: 5 runs x 10 epochs
  ;;
layouts)
  # 4. TRAK-1 with the three projection layouts at equal k on the same targets (the Mlp's two
  #    layers each project to 16 x 64 = 1,024 with the Kronecker layout: 2,048 in all, as dense and hadamard here).
  L="--seeds-per-subset 3 --subsets ${MLP_SUBSETS:-50} --query-count 500 --target margin --out $OUT/mlp/lds-3seeds"
  held $I evaluate lds --run "$OUT/mlp" --methods trak --proj-layout dense --proj-dim 2048 $L $T
  held $I evaluate lds --run "$OUT/mlp" --methods trak --proj-layout hadamard --proj-dim 2048 $L $T
  ;;
esac; done
