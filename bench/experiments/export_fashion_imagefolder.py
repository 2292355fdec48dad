#!/usr/bin/python3
"""Export Fashion-MNIST (IDX, gzip) as an image folder of RGB PNGs for `--data imagefolder:DIR`.

Usage: export_fashion_imagefolder.py OUT_DIR [--src DIR] [--size 32] [--train-count 3000]
                                     [--test-count 1000] [--flip 0.0] [--seed 4]

Writes OUT_DIR/train/<class>/<index>.png and OUT_DIR/test/<class>/<index>.png: a class-balanced,
seeded sample of `--train-count` training and `--test-count` test images, each grey 28x28 image
resized bilinearly (half-pixel centres) to SIZE x SIZE and replicated into R, G and B.
Class folders are named "0-T-shirt_top", "1-Trouser", ... so their ordinal order is the class index.
`--flip F` moves a seeded F fraction of the training images into a wrong class folder (uniform
over the other classes) and records them in OUT_DIR/flipped.json (file, true and given class); the
default 0 exports clean labels (bench/experiments/seed004.sh flips with `influence train --corrupt`, whose
record the detection commands read). OUT_DIR/export.json records every setting and the source
indices. Only numpy and the standard library; the same arguments give byte-identical files.
"""
import argparse, gzip, json, os, struct, sys, zlib
import numpy as np

CLASSES = ["T-shirt_top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle_boot"]


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic, = struct.unpack(">I", data[:4])
    ndim = magic & 0xFF
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(dims)):
        sys.exit(f"{path}: truncated IDX file ({arr.size} of {int(np.prod(dims))} bytes)")
    return arr.reshape(dims)


def resize_bilinear(img, size):
    """Bilinear resize of a [H, W] uint8 image, half-pixel centres, edge clamped."""
    h, w = img.shape
    def coords(n_out, n_in):
        x = (np.arange(n_out) + 0.5) * n_in / n_out - 0.5
        x = np.clip(x, 0, n_in - 1)
        x0 = np.floor(x).astype(int)
        x1 = np.minimum(x0 + 1, n_in - 1)
        return x0, x1, x - x0
    y0, y1, wy = coords(size, h)
    x0, x1, wx = coords(size, w)
    f = img.astype(np.float64)
    top = f[y0][:, x0] * (1 - wx) + f[y0][:, x1] * wx
    bot = f[y1][:, x0] * (1 - wx) + f[y1][:, x1] * wx
    out = top * (1 - wy)[:, None] + bot * wy[:, None]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def write_png(path, rgb):
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[y].tobytes() for y in range(h))
    def chunk(tag, body):
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF)
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))
    with open(path, "wb") as f:
        f.write(png)


def balanced(labels, count, rng):
    per = count // 10
    idx = []
    for c in range(10):
        members = np.flatnonzero(labels == c)
        if len(members) < per:
            sys.exit(f"class {c} has {len(members)} images, fewer than {per}")
        idx.extend(rng.choice(members, per, replace=False).tolist())
    return sorted(idx)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out")
    p.add_argument("--src", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--train-count", type=int, default=3000)
    p.add_argument("--test-count", type=int, default=1000)
    p.add_argument("--flip", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=4)
    a = p.parse_args()
    if a.size < 8 or a.train_count < 10 or a.test_count < 10 or not 0 <= a.flip < 1:
        sys.exit("bad --size/--train-count/--test-count/--flip")
    if os.path.exists(a.out) and os.listdir(a.out):
        sys.exit(f"{a.out}: exists and is not empty")
    rng = np.random.default_rng(a.seed)
    record = {"source": a.src, "size": a.size, "seed": a.seed, "flip": a.flip, "classes": CLASSES}
    flipped = []
    for split, prefix, count in (("train", "train", a.train_count), ("test", "t10k", a.test_count)):
        images = read_idx(os.path.join(a.src, f"{prefix}-images-idx3-ubyte.gz"))
        labels = read_idx(os.path.join(a.src, f"{prefix}-labels-idx1-ubyte.gz"))
        if len(images) != len(labels):
            sys.exit(f"{a.src}: {prefix} images and labels differ in length")
        idx = balanced(labels, count, rng)
        given = labels[idx].astype(int)
        if split == "train" and a.flip > 0:
            n_flip = int(round(a.flip * len(idx)))
            which = rng.choice(len(idx), n_flip, replace=False)
            for j in sorted(which.tolist()):
                true = int(given[j])
                given[j] = (true + 1 + int(rng.integers(0, 9))) % 10
                flipped.append({"file": f"train/{given[j]}-{CLASSES[given[j]]}/{idx[j]:05d}.png",
                                "source_index": int(idx[j]), "true": true, "given": int(given[j])})
        for c in range(10):
            os.makedirs(os.path.join(a.out, split, f"{c}-{CLASSES[c]}"), exist_ok=True)
        for src_i, c in zip(idx, given):
            img = resize_bilinear(images[src_i], a.size) if a.size != 28 else images[src_i]
            rgb = np.repeat(img[:, :, None], 3, axis=2)
            write_png(os.path.join(a.out, split, f"{c}-{CLASSES[c]}", f"{src_i:05d}.png"), rgb)
        record[f"{split}_source_indices"] = [int(i) for i in idx]
    if a.flip > 0:
        with open(os.path.join(a.out, "flipped.json"), "w") as f:
            json.dump(flipped, f, indent=1)
    with open(os.path.join(a.out, "export.json"), "w") as f:
        json.dump(record, f)
    print(f"{a.out}: {a.train_count} train + {a.test_count} test RGB {a.size}x{a.size} PNGs"
          + (f", {len(flipped)} training labels flipped (flipped.json)" if flipped else ""))


if __name__ == "__main__":
    main()
