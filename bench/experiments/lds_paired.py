#!/usr/bin/env python3
"""LDS rows from several lds-results.json files (e.g. one cache per setting) on their common first
queries, each with its paired difference to the first row (mean ± s.e. over queries).

usage: lds_paired.py [--queries A:B] DIR[#ROW] DIR[#ROW] ...
  ROW defaults to the file's first row that is neither a ceiling nor a seed-0 row; --queries A:B keeps
  queries A..B-1 of each file (default: all that every file has). Files whose queries start at different
  test examples (evaluate lds --query-offset) are refused: their queries are not paired.
"""
import json, math, os, sys


def mean_se(v):
    n = len(v)
    m = sum(v) / n
    sd = math.sqrt(sum((x - m) ** 2 for x in v) / (n - 1)) if n > 1 else float("nan")
    return m, sd / math.sqrt(n)


def row(spec):
    path, _, name = spec.partition("#")
    rows = json.load(open(os.path.join(path, "lds-results.json")))
    for r in rows:
        if (name and r["method"] == name) or (not name and not r["method"].startswith("ceiling") and "seed-0" not in r["method"]):
            return [0.0 if isinstance(x, str) else x for x in r["per_query"]], r.get("query_offset", 0)
    sys.exit(f"{spec}: no such row")


def main():
    args = sys.argv[1:]
    lo, hi = 0, None
    if args and args[0] == "--queries":
        a, b = args[1].split(":")
        lo, hi = int(a), int(b)
        args = args[2:]
    rows = [(s, row(s)) for s in args]
    offsets = {off for _, (_, off) in rows}
    if len(offsets) > 1:
        sys.exit(f"the files' queries start at different test examples ({sorted(offsets)}): not paired")
    off = offsets.pop()
    rows = [(s, v) for s, (v, _) in rows]
    n = min(len(v) for _, v in rows)
    hi = n if hi is None else min(hi, n)
    base = rows[0][1][lo:hi]
    print(f"queries {lo}..{hi - 1}" + (f" (test examples {lo + off}..{hi - 1 + off})" if off else ""))
    for s, v in rows:
        v = v[lo:hi]
        m, se = mean_se(v)
        d, dse = mean_se([x - y for x, y in zip(v, base)])
        print(f"  {s:55s} {m:.4f} ± {se:.4f}   minus first: {d:+.4f} ± {dse:.4f}")


if __name__ == "__main__":
    main()
