#!/usr/bin/python3
"""Tables of seed004-faithful.sh's results (markdown): stages (wall time, peak RSS), accuracies,
detection (found at 10% / 20%, ROC AUC) and removal (mean and standard error over the seeds that
finished of each removal's change against the full-data retraining with the same seed).

Usage: seed004_faithful_summary.py OUT_DIR
"""
import glob, json, math, os, re, sys

out = sys.argv[1]


def read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


print("| stage | wall s | peak RSS MiB | exit |\n|---|---:|---:|---:|")
for line in read(os.path.join(out, "stages.tsv")).splitlines():
    name, secs, mib, rc = line.split("\t")
    print(f"| {name} | {float(secs):.0f} | {int(mib):,} | {rc} |")
print()

for name in ("probe-imagenet", "probe-random", "ft-train", "sc-train"):
    m = re.search(r"final: train accuracy ([\d.]+)%, test accuracy ([\d.]+)%", read(os.path.join(out, "logs", name + ".out")))
    if m:
        print(f"- {name}: train {m.group(1)}%, test {m.group(2)}%")
print()

print("| run | method | found @10% | found @20% | ROC AUC | method seconds |\n|---|---|---:|---:|---:|---:|")
for path in sorted(glob.glob(os.path.join(out, "logs", "*-detect-*.out"))):
    run = "fine-tuned" if os.path.basename(path).startswith("ft-") else "from scratch"
    for line in read(path).splitlines():
        m = re.match(r"^(\S+)\s+([\d.]+) %\s+([\d.]+) %\s+([\d.]+) %\s+([\d.]+) %\s+([\d.]+)\s+([\d.]+)$", line.strip())
        if m:
            print(f"| {run} | {m.group(1)} | {m.group(3)}% | {m.group(4)}% | {m.group(6)} | {m.group(7)} |")
print()

# removal: one removal.json per seed
rows = {}
for path in sorted(glob.glob(os.path.join(out, "finetune", "run", "remove-seed*", "removal.json"))):
    r = json.load(open(path))
    base = r["baseline"][0]
    for s in r["settings"]:
        m = s["per_seed"][0]
        key = (s["kind"], s["k"])
        rows.setdefault(key, []).append((100 * (m["test_accuracy"] - base["test_accuracy"]),
                                         m["query_loss"] - base["query_loss"], 100 * base["test_accuracy"]))


def mse(v):
    n = len(v)
    mean = sum(v) / n
    se = math.sqrt(sum((x - mean) ** 2 for x in v) / (n - 1) / n) if n > 1 else float("nan")
    return mean, se


if rows:
    print("| removed | seeds | Δ test accuracy (points) | Δ query loss | full-data retrain accuracy |\n|---|---:|---:|---:|---:|")
    for (kind, k), v in sorted(rows.items()):
        a, sa = mse([x[0] for x in v]); l, sl = mse([x[1] for x in v])
        print(f"| {kind} {k} | {len(v)} | {a:+.2f} ± {sa:.2f} | {l:+.4f} ± {sl:.4f} | {', '.join(f'{x[2]:.1f}' for x in v)} |")
