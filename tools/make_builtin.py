"""Builds the embedded `builtin` data set: a class-balanced subset of Fashion-MNIST.

Source: the Debian package `dataset-fashion-mnist` (Zalando SE, MIT/Expat licence), files in
/usr/share/datasets/fashion-mnist. Takes the FIRST 600 images of each class from the training set
(6,000) and the first 100 of each class from the test set (1,000), keeping dataset order, and writes
them as gzipped IDX files (the same format as the originals) under data/builtin/.
Run: python3 tools/make_builtin.py [SRC_DIR]
"""
import gzip, struct, sys, os

SRC = sys.argv[1] if len(sys.argv) > 1 else "/usr/share/datasets/fashion-mnist"
OUT = os.path.join(os.path.dirname(__file__), "..", "data", "builtin")

def read_idx(path):
    data = gzip.open(path, "rb").read()
    magic, = struct.unpack(">I", data[:4])
    ndim = magic & 0xFF
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return dims, data[4 + 4 * ndim:]

def subset(prefix, per_class):
    (n, h, w), img = read_idx(f"{SRC}/{prefix}-images-idx3-ubyte.gz")
    (n2,), lab = read_idx(f"{SRC}/{prefix}-labels-idx1-ubyte.gz")
    assert n == n2
    count = [0] * 10
    keep = []
    for i in range(n):
        c = lab[i]
        if count[c] < per_class:
            count[c] += 1
            keep.append(i)
    imgs = b"".join(img[i * h * w:(i + 1) * h * w] for i in keep)
    labs = bytes(lab[i] for i in keep)
    return len(keep), h, w, imgs, labs

def write(name, header, payload):
    # mtime=0: byte-identical output on every run.
    with open(os.path.join(OUT, name), "wb") as f:
        with gzip.GzipFile(fileobj=f, mode="wb", mtime=0, filename="") as g:
            g.write(header + payload)

os.makedirs(OUT, exist_ok=True)
for prefix, per_class in [("train", 600), ("t10k", 100)]:
    n, h, w, imgs, labs = subset(prefix, per_class)
    write(f"{prefix}-images-idx3-ubyte.gz", struct.pack(">IIII", 0x0803, n, h, w), imgs)
    write(f"{prefix}-labels-idx1-ubyte.gz", struct.pack(">II", 0x0801, n), labs)
    print(prefix, n)
