#!/usr/bin/env python3
"""Noise ceilings of an LDS cache with several seeds per subset, and paired differences between
rows of its lds-results.json. Pure Python (reads the subset files' safetensors directly).

usage: lds_ceiling.py CACHE_DIR [--split K] [--pairs A=B ...]
  ceilings: one seed vs another, one seed vs the mean of the others, and the split-half reliability of
  the mean of all R seeds (mean of seeds 0..R/2-1 vs the rest, stepped up to R seeds by Spearman-Brown,
  rel_R = 2 rho / (1 + rho)); sqrt(rel_R) estimates the best LDS a deterministic predictor can reach
  against the R-seed targets (the correlation of the noisy targets with their own expectation).
  --split K: per row, the LDS over queries [0, K) and [K, n) separately (choose on one, report the other).
  --pairs A=B: mean ± s.e. over queries of LDS(A) - LDS(B) (row names as in lds-results.json).
"""
import glob, json, math, os, struct, sys


def load(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, h in header.items():
        if name == "__metadata__":
            continue
        a, b = h["data_offsets"]
        if h["dtype"] == "F64":
            vals = struct.unpack(f"<{(b - a) // 8}d", data[a:b])
        else:
            continue
        out[name] = (h["shape"], vals)
    return out


def ranks(x):
    order = sorted(range(len(x)), key=lambda i: x[i])
    r = [0.0] * len(x)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and x[order[j + 1]] == x[order[i]]:
            j += 1
        for k in range(i, j + 1):
            r[order[k]] = (i + j) / 2.0
        i = j + 1
    return r


def pearson(a, b):
    n = len(a)
    ma, mb = sum(a) / n, sum(b) / n
    sab = sum((x - ma) * (y - mb) for x, y in zip(a, b))
    sa = math.sqrt(sum((x - ma) ** 2 for x in a))
    sb = math.sqrt(sum((y - mb) ** 2 for y in b))
    return float("nan") if sa == 0 or sb == 0 else sab / (sa * sb)


def spearman(a, b):
    return pearson(ranks(a), ranks(b))


def mean_se(v):
    v = [0.0 if math.isnan(x) else x for x in v]
    n = len(v)
    m = sum(v) / n
    sd = math.sqrt(sum((x - m) ** 2 for x in v) / (n - 1)) if n > 1 else float("nan")
    return m, sd / math.sqrt(n)


def main():
    args = sys.argv[1:]
    cache = args[0]
    split = None
    pairs = []
    if "--split" in args:
        split = int(args[args.index("--split") + 1])
    if "--pairs" in args:
        pairs = [p for p in args[args.index("--pairs") + 1:] if "=" in p]
    files = sorted(glob.glob(os.path.join(cache, "subset-*.safetensors")))
    subsets = []
    for p in files:
        shape, vals = load(p)["margins"]
        r, nq = shape
        subsets.append([vals[k * nq:(k + 1) * nq] for k in range(r)])
    m = len(subsets)
    r, nq = len(subsets[0]), len(subsets[0][0])
    print(f"{cache}: {m} subsets, {r} seeds each, {nq} queries")

    def per_query(f):
        return [f(q) for q in range(nq)]

    def col(seeds, q):
        return [sum(s[k][q] for k in seeds) / len(seeds) for s in subsets]

    rows = {}
    if r >= 2:
        rows["seed 0 vs seed 1"] = per_query(lambda q: spearman(col([0], q), col([1], q)))
        rows[f"seed 0 vs mean of the other {r - 1}"] = per_query(lambda q: spearman(col([0], q), col(range(1, r), q)))
    if r >= 4:
        h = r // 2
        half = per_query(lambda q: spearman(col(range(h), q), col(range(h, 2 * h), q)))
        rows[f"split half: mean of {h} vs mean of {h}"] = half
        # Spearman-Brown per query, then the square root: the correlation of the R-seed mean with its expectation.
        ceil = []
        for rho in half:
            if math.isnan(rho) or rho <= 0:
                ceil.append(0.0)
                continue
            rel = (r / h) * rho / (1 + (r / h - 1) * rho)
            ceil.append(math.sqrt(rel))
        rows[f"ceiling of the {r}-seed targets, sqrt(Spearman-Brown reliability)"] = ceil
        # The same for the first 3 seeds (the earlier 3-seed protocol), for comparison.
        if r >= 3:
            one = per_query(lambda q: spearman(col([0], q), col([1], q)))
            ceil3 = [math.sqrt(3 * x / (1 + 2 * x)) if x > 0 else 0.0 for x in one]
            rows["ceiling of 3-seed targets (from seed 0 vs 1)"] = ceil3
            ceil1 = [math.sqrt(x) if x > 0 else 0.0 for x in one]
            rows["ceiling of 1-seed targets (from seed 0 vs 1)"] = ceil1
    for name, v in rows.items():
        mu, se = mean_se(v)
        print(f"  {name:70s} {mu:.4f} ± {se:.4f}")

    res_path = os.path.join(cache, "lds-results.json")
    if not os.path.exists(res_path):
        return
    res = {row["method"]: row for row in json.load(open(res_path)) if row.get("per_query")}
    def pq(row):
        return [0.0 if isinstance(x, str) else x for x in row["per_query"]]
    if split is not None:
        print(f"LDS on queries [0, {split}) and [{split}, {nq}):")
        for name, row in res.items():
            v = pq(row)
            a, b = mean_se(v[:split]), mean_se(v[split:])
            print(f"  {name:60s} {a[0]:.4f} ± {a[1]:.4f}   {b[0]:.4f} ± {b[1]:.4f}")
    for p in pairs:
        a, b = p.split("=", 1)
        if a not in res or b not in res:
            print(f"  {p}: row missing")
            continue
        d = [x - y for x, y in zip(pq(res[a]), pq(res[b]))]
        mu, se = mean_se(d)
        print(f"  {a}  minus  {b}: {mu:+.4f} ± {se:.4f} (paired over queries)")


if __name__ == "__main__":
    main()
