#!/usr/bin/env bash
# Slurm stage: the attribution pipeline as Slurm array jobs on a real single-node cluster (Debian's
# slurm-wlm + munge, deploy/slurm/local-cluster.sh) must give byte-identical outputs to the
# single-process commands, also after a task is killed while it runs and resubmitted alone.
#
#  1. starts a fresh local cluster (installs slurm-wlm/munge if missing; needs root);
#  2. builds the CLI in Release (or uses $INFLUENCE) and trains a small Mlp run;
#  3. single-process reference: fit-factors, scores self, scores pairwise, build-store + scores for
#     tracin-last and trak, evaluate lds, all with --threads 1 (the tasks' thread count: torch's CPU reductions
#     depend on it, sharding does not);
#  4. deploy/slurm/run-pipeline.sh with 4 tasks per array and --partition-size 500, where the test
#     hook stalls fit-factors task 2 (killed with scancel while it runs, then resubmitted alone and
#     the pending merge pointed at it) and scores-pairwise task 1 after its work (killed before it
#     exits: the array fails, the resubmitted task finds its partitions done);
#  5. evaluate lds (4 retraining subsets) as an array too;
#  6. cmp of every merged output with the reference; stops the daemons and deletes everything.
# Runs as root with no stdin; prints its wall time.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
t0=$SECONDS
work=$(mktemp -d /tmp/influencesharp-slurm-test.XXXXXX)
export INFLUENCE_SLURM_DIR="$work/cluster"
export INFLUENCE_SLURM_PORT=${INFLUENCE_SLURM_PORT:-6827}   # not the default: leaves a cluster on 6817 alone
export SLURM_CONF="$INFLUENCE_SLURM_DIR/slurm.conf"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
cluster="$repo/deploy/slurm/local-cluster.sh"
ok=0
cleanup() {
  if [ "$ok" != 1 ]; then
    echo "slurm stage: last lines of the logs:" >&2
    tail -n 15 "$work"/out/logs/* "$INFLUENCE_SLURM_DIR"/log/*.log >&2 2>/dev/null || true
  fi
  "$cluster" stop || true
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "slurm stage: FAIL: $*" >&2; exit 1; }
last=$SECONDS
step() { echo "slurm stage: $1 ($((SECONDS - last)) s)"; last=$SECONDS; }

"$cluster" start
sinfo
step "local cluster up"

if [ -z "${INFLUENCE:-}" ]; then
  dotnet build -c Release "$repo/src/InfluenceSharp.Cli" -nologo -v:q >"$work/build.log" 2>&1 || { cat "$work/build.log"; fail "dotnet build"; }
  export INFLUENCE="dotnet $repo/src/InfluenceSharp.Cli/bin/Release/net10.0/influence.dll"
fi
step "CLI: $INFLUENCE"

cd "$work"
$INFLUENCE train --out R --data embedded --model mlp --epochs 2 --train-count 9000 --corrupt 0.1 --quiet
cp -r R ref-run; cp -r R slurm-run
step "trained (9,000 examples: 18 partitions of 500, 3 feature-store blocks of 4,096)"

# --- single-process reference ------------------------------------------------------------------
I() { $INFLUENCE "$@" --threads 1 --quiet >/dev/null; }
ref=$work/ref
I fit-factors --run ref-run --out "$ref/factors" --partition-size 500
I scores self --run ref-run --factors "$ref/factors" --out "$ref/self" --partition-size 500
I scores pairwise --run ref-run --factors "$ref/factors" --out "$ref/pairwise" --partition-size 500 --query-count 20
for m in tracin-last trak; do
  I build-store --run ref-run --methods $m
  I scores self --run ref-run --methods $m --out "$ref/$m-self"
  I scores pairwise --run ref-run --methods $m --out "$ref/$m-pairwise" --query-count 20
done
I evaluate lds --run ref-run --out "$ref/lds" --subsets 4 --epochs 1 --query-count 20 --methods ekfac,tracin-last
step "single-process reference"

# --- the pipeline on Slurm, two tasks stalled by the test hook --------------------------------
out=$work/out
export INFLUENCE_TEST_STALL="fit-factors:2:before:600,scores-pairwise:1:after:600"
"$repo/deploy/slurm/run-pipeline.sh" slurm-run --out "$out" --shards 4 --partition-size 500 --query-count 20 --features tracin-last,trak \
  --lds 4 --lds-methods ekfac,tracin-last --lds-args "--epochs 1 --query-count 20"
unset INFLUENCE_TEST_STALL
job() { awk -F'\t' -v s="$1" '$1 == s { print $2 }' "$out/jobs.tsv"; }
resubmit() { awk -F'\t' -v s="$1" '$1 == s { print $3 }' "$out/jobs.tsv" | sed "s/--array=K/--array=$2/"; }
deadline=$((SECONDS + ${SLURM_STAGE_TIMEOUT:-600}))
gone() { [ -z "$(squeue -h "$@" -o %i 2>/dev/null)" ]; }   # gone SQUEUE-ARGS: nothing left in the queue
wait_until() {   # wait_until DESCRIPTION COMMAND...: polls until COMMAND succeeds (re-run each time)
  local what=$1; shift
  until "$@"; do [ $SECONDS -lt $deadline ] || { squeue; fail "timed out waiting for $what"; }; sleep 1; done
}
# Task K of array A is running, stalled by the hook, and every other task of A has finished.
only_task_running() {
  [ "$(squeue -h -j "$1" -o '%i %T' | tr '\n' ' ')" = "${1}_$2 RUNNING " ] && grep -q "test hook: stalling" "$out/logs/$3-$1_$2.out" 2>/dev/null
}
kill_and_resubmit() {   # kill_and_resubmit STAGE TASK MERGE-STAGE
  local a m j
  a=$(job "$1"); m=$(job "$3")
  wait_until "$1 task $2 alone running" only_task_running "$a" "$2" "$1"
  scancel "${a}_$2"
  wait_until "$1 task $2 to end" gone -j "${a}_$2"
  grep -o 'JobState=[A-Z]*' <<<"$(scontrol -o show job "${a}_$2")" | grep -x 'JobState=CANCELLED' >/dev/null || fail "${a}_$2 was not cancelled"
  wait_until "$3 to wait for ever" bash -c "squeue -h -j $m -o %r | grep -qx DependencyNeverSatisfied"
  echo "slurm stage: killed task ${a}_$2 while running; merge job $m: DependencyNeverSatisfied"
  j=$(eval "$(resubmit "$1" "$2" | sed "s/^sbatch /sbatch --parsable /")")
  j=${j%%;*}
  scontrol update JobId="$m" Dependency="afterok:$j"
  echo "slurm stage: resubmitted $1 task $2 alone as job $j; merge $m now waits for it"
  wait_until "resubmitted job $j" gone -j "$j"
  grep -q 'JobState=COMPLETED' <<<"$(scontrol -o show job "$j")" || { cat "$out/logs/$1-${j}_$2.out" >&2; fail "resubmitted task $j did not complete"; }
}
kill_and_resubmit fit-factors 2 merge-fit-factors
step "fit-factors task killed and resubmitted"
kill_and_resubmit scores-pairwise 1 merge-scores-pairwise
step "scores-pairwise task killed after its work and resubmitted"
wait_until "the pipeline" gone
for s in merge-fit-factors merge-scores-self merge-scores-pairwise merge-tracin-last merge-trak merge-lds; do
  state=$(scontrol -o show job "$(job $s)" | grep -o 'JobState=[A-Z]*')
  [ "$state" = JobState=COMPLETED ] || fail "$s: $state (log: $out/logs)"
done
step "pipeline on Slurm (4 tasks per array, 2 killed + resubmitted)"

# --- byte-identical --------------------------------------------------------------------------
n=0
same() {
  cmp "$1" "$2" || fail "$2 differs from the single-process $1"
  printf '  identical  %-48s %9d bytes\n' "${2#"$work"/}" "$(stat -c %s "$2")"
  n=$((n + 1))
}
echo "slurm stage: merged outputs vs single-process (cmp):"
same "$ref/factors/factors.safetensors" "$out/factors/factors.safetensors"
same "$ref/factors/manifest.json" "$out/factors/manifest.json"
for d in self tracin-last-self trak-self; do
  same "$ref/$d/self_influence.npy" "$out/$d/self_influence.npy"
  same "$ref/$d/manifest.json" "$out/$d/manifest.json"
done
for d in pairwise tracin-last-pairwise trak-pairwise; do
  same "$ref/$d/scores.npy" "$out/$d/scores.npy"
  same "$ref/$d/manifest.json" "$out/$d/manifest.json"
  same "$ref/$d/query_indices.json" "$out/$d/query_indices.json"
done
for f in ref-run/store/*/blocks/*.safetensors ref-run/store/*/manifest.json; do
  same "$work/$f" "$work/slurm-run/${f#ref-run/}"
done
for f in "$ref"/lds/subset-*.safetensors "$ref/lds/lds.json" "$ref/lds/lds-results.json"; do
  same "$f" "$out/lds/${f#"$ref"/lds/}"
done
[ -d "$out/factors/partials" ] && fail "factors/partials left behind"
ok=1
echo "slurm stage: OK, $n files byte-identical; wall time $((SECONDS - t0)) s"
