#!/usr/bin/env bash
# Peak RSS of `train` and `detect-mislabeled` on a csv: table against its number of rows: a synthetic
# table (50 numeric features, 10 classes from a random linear rule, 10 % of labels flipped) of N rows,
# the Mlp trained 1 epoch, then detection with TracIn (last layer). Every stage runs as its own
# process under GNU time; peak RSS = its maximum resident set size.
#
# Usage: bench/experiments/csv-rss.sh [OUT_DIR] (default /tmp/csv-rss)
#   SIZES="50000 200000" THREADS=1 INFLUENCE_CLI (default: this checkout's Release build)
# Output: OUT/stages.tsv (rows, stage, seconds, peak RSS MiB, exit, load average) and a markdown table.
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
OUT=$(realpath -m "${1:-/tmp/csv-rss}")
SIZES=${SIZES:-"50000 200000"}
THREADS=${THREADS:-1}
I=${INFLUENCE_CLI:-"dotnet $ROOT/src/InfluenceSharp.Cli/bin/Release/net10.0/influence.dll"}
mkdir -p "$OUT/logs"
: > "$OUT/stages.tsv"

stage() {
  local n=$1 name=$2; shift 2
  local rc=0
  /usr/bin/time -v -o "$OUT/logs/$n-$name.time" "$@" > "$OUT/logs/$n-$name.out" 2> "$OUT/logs/$n-$name.log" || rc=$?
  local secs kib
  secs=$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]; print s}' "$OUT/logs/$n-$name.time")
  kib=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$OUT/logs/$n-$name.time")
  printf '%s\t%s\t%s\t%d\t%d\t%s\n' "$n" "$name" "$secs" $((kib / 1024)) "$rc" "$(cut -d' ' -f1 /proc/loadavg)" >> "$OUT/stages.tsv"
  echo "[$(date -u +%T)] n=$n $name: exit $rc, ${secs}s, peak RSS $((kib / 1024)) MiB, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
}

for n in $SIZES; do
  csv="$OUT/table$n.csv"
  [ -f "$csv" ] || python3 - "$csv" "$n" <<'PY'
import random, sys
path, n = sys.argv[1], int(sys.argv[2])
rng = random.Random(0)
w = [[rng.gauss(0, 1) for _ in range(50)] for _ in range(10)]
with open(path, "w") as f:
    f.write(",".join(f"x{j}" for j in range(50)) + ",label\n")
    for _ in range(n):
        x = [rng.gauss(0, 1) for _ in range(50)]
        y = max(range(10), key=lambda k: sum(a * b for a, b in zip(w[k], x)))
        if rng.random() < 0.1: y = rng.randrange(10)
        f.write(",".join(f"{v:.6f}" for v in x) + f",{y}\n")
PY
  run="$OUT/run$n"
  stage "$n" train $I train --data "csv:$csv" --model mlp --epochs 1 --seed 0 --threads "$THREADS" --out "$run" --overwrite --quiet
  stage "$n" detect $I detect-mislabeled --run "$run" --methods tracin-last --top 16 --threads "$THREADS" --quiet
done
echo "| rows | stage | seconds | peak RSS MiB | exit | load at end |"
echo "|---:|---|---:|---:|---:|---:|"
awk -F'\t' '{printf "| %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6}' "$OUT/stages.tsv"
