#!/usr/bin/env python3
"""Writes a synthetic RGB PNG image folder DIR/train/<class>/NNNNNN.png of N images and
DIR/test/<class>/NNNNNN.png of --test more (standard library only: zlib + struct), for the peak-RSS bench (stream-rss.sh). Images are the embedded Fashion-MNIST
subset's pictures (data/fashion-mnist-subset, 10,000 images, labels kept) padded/tiled to SIZE x SIZE,
each copy tinted by its copy number so that every file is different. Seeded and byte-reproducible.

Usage: synthetic_imagefolder.py DIR N [--size 32] [--test 500]
"""
import argparse, gzip, os, struct, zlib

p = argparse.ArgumentParser()
p.add_argument("out"); p.add_argument("n", type=int); p.add_argument("--size", type=int, default=32); p.add_argument("--test", type=int, default=500)
a = p.parse_args()
root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "data", "fashion-mnist-subset")

def idx(name):
    b = gzip.open(os.path.join(root, name)).read()
    rank = b[3]
    return struct.unpack(">" + "I" * rank, b[4:4 + 4 * rank]), b[4 + 4 * rank:]

(N, H, W), px = idx("train-images-idx3-ubyte.gz")
_, labels = idx("train-labels-idx1-ubyte.gz")
names = ["tshirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot"]

def chunk(t, d):
    return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)

S = a.size
for part in ("train", "test"):
    for c in names: os.makedirs(os.path.join(a.out, part, c), exist_ok=True)
for i in range(a.n + a.test):
    src, copy = i % N, i // N
    tint = ((37 * copy) % 256, (91 * copy + 50) % 256, (53 * copy + 100) % 256)
    base = src * H * W
    rows = []
    for y in range(S):
        r = bytearray(b"\x00")
        yy = y % H
        for x in range(S):
            v = px[base + yy * W + (x % W)]
            r += bytes(((v + tint[0]) & 255, (v + tint[1]) & 255, (v + tint[2]) & 255))
        rows.append(bytes(r))
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", S, S, 8, 2, 0, 0, 0)) + \
        chunk(b"IDAT", zlib.compress(b"".join(rows), 1)) + chunk(b"IEND", b"")
    with open(os.path.join(a.out, "train" if i < a.n else "test", names[labels[src]], f"{i:06d}.png"), "wb") as f: f.write(data)
