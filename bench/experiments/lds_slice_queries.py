#!/usr/bin/env python3
"""Copies an LDS cache's retraining results for its first K queries into another cache.

usage: lds_slice_queries.py SRC_CACHE DST_CACHE K

The retrained models of a subset do not depend on the queries (seeds come from the run, the subset
and the replicate), so the results of `evaluate lds --query-count K` are the first K columns of those
of a larger query count on the same run, subsets and seeds. DST_CACHE/lds.json must exist already
(start `influence evaluate lds ... --query-count K --out DST_CACHE` and stop it once lds.json is
written); its settings are checked against SRC_CACHE's except the query count and fingerprint.
"""
import glob, json, os, struct, sys


def read(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    return header, data


def write(path, tensors, metadata):
    header, blobs, off = {"__metadata__": metadata}, [], 0
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def main():
    src, dst, k = sys.argv[1], sys.argv[2], int(sys.argv[3])
    ms, md = json.load(open(os.path.join(src, "lds.json"))), json.load(open(os.path.join(dst, "lds.json")))
    for key in ms:
        if key in ("query_fingerprint", "query_count", "library_version"):
            continue
        if ms[key] != md.get(key):
            sys.exit(f"{dst}/lds.json: {key} differs from {src}'s ({md.get(key)!r} vs {ms[key]!r})")
    if ms.get("query_offset", 0) != md.get("query_offset", 0):   # the first K queries must be the same test examples
        sys.exit(f"{dst}/lds.json: query_offset {md.get('query_offset', 0)} differs from {src}'s ({ms.get('query_offset', 0)})")
    if md["query_count"] != k or ms["query_count"] < k:
        sys.exit(f"query counts: source {ms['query_count']}, destination {md['query_count']}, K {k}")
    nq = ms["query_count"]
    files = sorted(glob.glob(os.path.join(src, "subset-*.safetensors")))
    for p in files:
        header, data = read(p)
        out = {}
        for name, h in header.items():
            if name == "__metadata__":
                continue
            a, b = h["data_offsets"]
            raw = data[a:b]
            if name in ("margins", "losses"):
                r = h["shape"][0]
                raw = b"".join(raw[(i * nq) * 8:(i * nq + k) * 8] for i in range(r))
                out[name] = (h["dtype"], [r, k], raw)
            else:
                out[name] = (h["dtype"], h["shape"], raw)
        write(os.path.join(dst, os.path.basename(p)), out, header.get("__metadata__", {}))
    print(f"{len(files)} subset files sliced to the first {k} of {nq} queries into {dst}")


if __name__ == "__main__":
    main()
