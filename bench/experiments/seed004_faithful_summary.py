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
    if not secs:  # stopped (killed) before GNU time could report
        print(f"| {name} | stopped | - | {rc} |")
        continue
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

# removal: every retraining's line in the evaluate-remove logs ("removal <setting> seed S: query loss L acc A %,
# test acc T % (Ns)"), so that an interrupted invocation's whole seeds count; a seed counts once it has the
# full-data baseline and every setting.
LINE = re.compile(r"removal (baseline|\w+ k=\d+) seed (\d+): query loss ([\d.]+) acc ([\d.]+) ?%, test acc ([\d.]+) ?% \(([\d.]+)s\)")
runs = {}
for path in sorted(glob.glob(os.path.join(out, "logs", "ft-remove-*.log"))):
    for m in LINE.finditer(read(path)):
        runs.setdefault(int(m.group(2)), {})[m.group(1)] = (float(m.group(3)), float(m.group(5)), float(m.group(6)))


def mse(v):
    n = len(v)
    mean = sum(v) / n
    sd = math.sqrt(sum((x - mean) ** 2 for x in v) / (n - 1)) if n > 1 else float("nan")
    return mean, sd, sd / math.sqrt(n) if n > 1 else float("nan")


settings = sorted({k for r in runs.values() for k in r if k != "baseline"})
whole = {s: r for s, r in runs.items() if "baseline" in r and all(k in r for k in settings)}
if whole:
    seeds = sorted(whole)
    base_acc = [whole[s]["baseline"][1] for s in seeds]
    secs = [v[2] for s in seeds for v in whole[s].values()]
    a, sd, _ = mse(base_acc)
    print(f"{len(seeds)} whole seeds ({', '.join(map(str, seeds))}); full-data retrain test accuracy {a:.2f}% (sd {sd:.2f} over seeds); "
          f"retraining + measuring {sum(secs) / len(secs):.1f} s on average ({min(secs):.1f}-{max(secs):.1f})\n")
    print("| removed | seeds | Δ test accuracy, points (sd; s.e.) | Δ query loss (sd; s.e.) |\n|---|---:|---:|---:|")
    for k in settings:
        da = [whole[s][k][1] - whole[s]["baseline"][1] for s in seeds]
        dl = [whole[s][k][0] - whole[s]["baseline"][0] for s in seeds]
        (ma, sa, ea), (ml, sl, el) = mse(da), mse(dl)
        print(f"| {k.lower()} | {len(seeds)} | {ma:+.2f} (sd {sa:.2f}; ± {ea:.2f}) | {ml:+.4f} (sd {sl:.4f}; ± {el:.4f}) |")
    rnd = next((k for k in settings if k.startswith("Random")), None)
    if rnd:
        print("\nAgainst random removal of the same size, paired by seed:\n")
        print("| removed − random | Δ test accuracy, points (± s.e.) | Δ query loss (± s.e.) |\n|---|---:|---:|")
        for k in settings:
            if k == rnd or k.split()[1] != rnd.split()[1]:
                continue
            da = [whole[s][k][1] - whole[s][rnd][1] for s in seeds]
            dl = [whole[s][k][0] - whole[s][rnd][0] for s in seeds]
            (ma, _, ea), (ml, _, el) = mse(da), mse(dl)
            print(f"| {k.lower()} | {ma:+.2f} ± {ea:.2f} | {ml:+.4f} ± {el:.4f} |")
