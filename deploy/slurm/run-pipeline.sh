#!/usr/bin/env bash
# Submits the attribution pipeline of an existing run (`influence train --out RUN`) to Slurm as
# array jobs (one task per shard) and merge jobs chained by --dependency=afterok:
#
#   fit-factors array ──> merge ──┬─> scores self array ────> merge     OUT/self/self_influence.npy
#                                 └─> scores pairwise array ─> merge     OUT/pairwise/scores.npy
#   build-store array (per feature method M) ──> merge + scores          OUT/M-self, OUT/M-pairwise
#   evaluate lds array (retraining, optional) ──> merge                  OUT/lds/lds-results.json
#
# Usage: deploy/slurm/run-pipeline.sh RUN [options]
#   --out DIR              outputs [default: RUN/attribution]
#   --shards N             array tasks per stage [default: 4]
#   --partition-size N     examples per saved partition (fit-factors, scores) [default: 10000]
#   --strategy S           fit-factors strategy: identity|diagonal|kfac|ekfac [default: ekfac]
#   --no-factors           skip fit-factors and the influence-function scores
#   --features M,...       feature methods to build stores for and score (tracin-last, trak, ...;
#                          `none` for none) [default: tracin-last]
#   --query-count N        pairwise queries: the first N test examples [default: 100]
#   --lds N                also evaluate LDS with N retraining subsets [default: 0 = no]
#   --lds-methods M,...    methods the LDS merge scores [default: ekfac]
#   --lds-args "ARGS"      more `evaluate lds` options, e.g. "--epochs 1 --query-count 50"
#   --cpus-per-task N      CPUs of every task (passed to influence as --threads) [default: 1]
#   --sbatch-args "ARGS"   more sbatch options for every job, e.g. "--partition=gpu --gres=gpu:1"
#   --wait                 wait until every job has finished; exit 1 if one failed
#
# The influence command is $INFLUENCE (e.g. INFLUENCE="dotnet /path/influence.dll"), else
# `influence` on PATH. Jobs see this environment (sbatch --export=ALL). Logs: OUT/logs/%x-%A_%a.out.
# OUT/jobs.tsv lists every job: stage, job id, and the command that resubmits one task K alone
# (replace K); after that, point the stage's merge at the new job:
#   scontrol update JobId=MERGE Dependency=afterok:NEWJOB
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit "${1:-2}"; }
[ $# -ge 1 ] || usage
case "$1" in -h|--help) usage 0 ;; esac
run=$(cd "$1" && pwd) || { echo "run-pipeline: no run directory $1" >&2; exit 2; }
shift
out="$run/attribution" shards=4 partition=10000 strategy=ekfac factors=1 features=tracin-last queries=100
lds=0 lds_methods=ekfac lds_args="" cpus=1 sbatch_args="" wait=0
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=$2; shift 2 ;;
    --shards) shards=$2; shift 2 ;;
    --partition-size) partition=$2; shift 2 ;;
    --strategy) strategy=$2; shift 2 ;;
    --no-factors) factors=0; shift ;;
    --features) features=$2; shift 2 ;;
    --query-count) queries=$2; shift 2 ;;
    --lds) lds=$2; shift 2 ;;
    --lds-methods) lds_methods=$2; shift 2 ;;
    --lds-args) lds_args=$2; shift 2 ;;
    --cpus-per-task) cpus=$2; shift 2 ;;
    --sbatch-args) sbatch_args=$2; shift 2 ;;
    --wait) wait=1; shift ;;
    -h|--help) usage 0 ;;
    *) echo "run-pipeline: unknown option $1" >&2; usage ;;
  esac
done
[[ $shards =~ ^[1-9][0-9]*$ ]] || { echo "run-pipeline: --shards $shards: a positive integer" >&2; exit 2; }
if [ -z "${INFLUENCE:-}" ]; then
  command -v influence >/dev/null || { echo "run-pipeline: set INFLUENCE to the influence command, or install the tool" >&2; exit 2; }
  export INFLUENCE=influence
fi
command -v sbatch >/dev/null || { echo "run-pipeline: sbatch not found (is Slurm installed? SLURM_CONF set?)" >&2; exit 2; }
mkdir -p "$out/logs"
out=$(cd "$out" && pwd)
jobs="$out/jobs.tsv"
printf 'stage\tjob\tresubmit task K alone\n' >"$jobs"
read -r -a extra <<<"$sbatch_args"
all=()

# submit NAME KIND DEPENDENCY SCRIPT ARGS... -> the job id in $jid (not a subshell: `all` collects the ids)
submit() {
  local name=$1 kind=$2 dep=$3 script=$4; shift 4
  local opts=(--parsable --job-name="$name" --cpus-per-task="$cpus" --export=ALL "${extra[@]}")
  [ -n "$dep" ] && opts+=(--dependency="afterok:$dep" --kill-on-invalid-dep=no)
  if [ "$kind" = array ]; then
    opts+=(--array="0-$((shards - 1))" --output="$out/logs/%x-%A_%a.out")
  else
    opts+=(--output="$out/logs/%x-%j.out")
  fi
  local id
  id=$(INFLUENCE_SHARDS=$shards sbatch "${opts[@]}" "$here/$script" "$@") || { echo "run-pipeline: sbatch $name failed" >&2; exit 1; }
  id=${id%%;*}
  all+=("$id")
  local again=""
  if [ "$kind" = array ]; then
    again=$(printf '%q ' sbatch --array=K --job-name="$name" --cpus-per-task="$cpus" --export="ALL,INFLUENCE_SHARDS=$shards" "${extra[@]}" \
      --output="$out/logs/%x-%A_%a.out" "$here/$script" "$@")
  fi
  printf '%s\t%s\t%s\n' "$name" "$id" "$again" >>"$jobs"
  jid=$id
}

summary=()
if [ "$factors" = 1 ]; then
  fit=(--run "$run" --out "$out/factors" --strategy "$strategy" --partition-size "$partition")
  submit fit-factors array "" fit-factors.sbatch "${fit[@]}" --quiet; a=$jid
  submit merge-fit-factors merge "$a" merge.sbatch fit-factors "${fit[@]}" --quiet; m=$jid
  self=(--run "$run" --factors "$out/factors" --out "$out/self" --partition-size "$partition")
  submit scores-self array "$m" scores-self.sbatch "${self[@]}" --quiet; a=$jid
  submit merge-scores-self merge "$a" merge.sbatch scores self "${self[@]}" --quiet
  pair=(--run "$run" --factors "$out/factors" --out "$out/pairwise" --partition-size "$partition" --query-count "$queries")
  submit scores-pairwise array "$m" scores-pairwise.sbatch "${pair[@]}" --quiet; a=$jid
  submit merge-scores-pairwise merge "$a" merge.sbatch scores pairwise "${pair[@]}" --quiet
  summary+=("$out/factors/            $strategy factors (factors.safetensors, manifest.json)"
            "$out/self/self_influence.npy"
            "$out/pairwise/scores.npy    [$queries queries x training examples]")
fi
if [ "$features" != none ]; then
  IFS=, read -r -a fms <<<"$features"
  for fm in "${fms[@]}"; do
    submit "build-store-$fm" array "" build-store.sbatch --run "$run" --methods "$fm" --quiet; a=$jid
    submit "merge-$fm" merge "$a" merge.sbatch build-store --run "$run" --methods "$fm" --quiet \
      ::: scores self --run "$run" --methods "$fm" --out "$out/$fm-self" --quiet \
      ::: scores pairwise --run "$run" --methods "$fm" --out "$out/$fm-pairwise" --query-count "$queries" --quiet
    summary+=("$run/store/              $fm training-set features"
              "$out/$fm-self/self_influence.npy"
              "$out/$fm-pairwise/scores.npy")
  done
fi
if [ "$lds" != 0 ]; then
  read -r -a la <<<"$lds_args"
  l=(--run "$run" --out "$out/lds" --subsets "$lds" "${la[@]}")
  submit lds array "" lds.sbatch "${l[@]}" --quiet; a=$jid
  submit merge-lds merge "$a" merge.sbatch evaluate lds "${l[@]}" --methods "$lds_methods"
  summary+=("$out/lds/lds-results.json  (the LDS table is in OUT/logs/merge-lds-*.out)")
fi

echo "submitted ${#all[@]} jobs (${shards} tasks per array): $(IFS=' '; echo "${all[*]}")"
echo "jobs and resubmission commands: $jobs"
echo "logs: $out/logs/"
echo "outputs once the merges have run:"
printf '  %s\n' "${summary[@]}"

if [ "$wait" = 1 ]; then
  ids=$(IFS=,; echo "${all[*]}")
  while [ -n "$(squeue -h -j "$ids" -o %i 2>/dev/null)" ]; do sleep 2; done
  failed=0
  for id in "${all[@]}"; do
    # Finished jobs stay visible to scontrol for MinJobAge; an array job shows one record per task.
    states=$(scontrol -o show job "$id" 2>/dev/null | grep -o 'JobState=[A-Z_]*' | sort -u | tr '\n' ' ')
    [ "$states" = "JobState=COMPLETED " ] || { echo "job $id: $states" >&2; failed=1; }
  done
  [ "$failed" = 0 ] && echo "all jobs completed" || { echo "run-pipeline: some jobs did not complete (see $out/logs)" >&2; exit 1; }
fi
