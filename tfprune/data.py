"""Datasets for examples, tests and benchmarks, all usable offline.

- `load_digits()`: scikit-learn's 8x8 digits (1,797 images), shipped inside scikit-learn.
- `load_mnist()`: MNIST from local files: the official 10k test set (IDX gz) and a
  5k-image training subset (CSV gz), looked up in `$TFPRUNE_MNIST_DIR` or the
  project's `../shared/datasets/mnist`. `download_mnist()` fetches the official
  files with checksums and fails with a clear message when offline.
"""

import csv
import gzip
import hashlib
import os
import struct
from pathlib import Path

import numpy as np

MNIST_URL = "https://storage.googleapis.com/cvdf-datasets/mnist/"
MNIST_MD5 = {
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
MNIST_TRAIN_SUBSET = "mnist_5k.csv.gz"


def load_digits(test_fraction=0.25, seed=0):
    """Digits as float32 in [0, 1], shape (n, 8, 8, 1), split into train and test.

    Example:

    >>> (x_train, y_train), (x_test, y_test) = load_digits()
    >>> x_train.shape[1:]
    (8, 8, 1)
    """
    from sklearn.datasets import load_digits as sk_load_digits
    from sklearn.model_selection import train_test_split

    digits = sk_load_digits()
    x = (digits.images / 16.0).astype("float32")[..., None]
    y = digits.target.astype("int64")
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=test_fraction, random_state=seed, stratify=y)
    return (x_train, y_train), (x_test, y_test)


def mnist_dir():
    """The local MNIST folder: `$TFPRUNE_MNIST_DIR`, else `shared/datasets/mnist` beside the checkout."""
    env = os.environ.get("TFPRUNE_MNIST_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "shared" / "datasets" / "mnist"


def read_idx(path):
    """Reads an IDX file (optionally gzipped) into a numpy array."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4:
        raise ValueError(f"'{path}' is not an IDX file: only {len(data)} bytes.")
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f"'{path}' is not an unsigned-byte IDX file (header {data[:4].hex()}).")
    dims = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise ValueError(f"'{path}' is truncated: header says {dims}, found {body.size} values.")
    return body.reshape(dims)


def _read_csv_subset(path):
    with gzip.open(path, "rt") as f:
        rows = np.array([[int(v) for v in row] for row in csv.reader(f) if row], dtype=np.uint8)
    return rows[:, :784].reshape(-1, 28, 28), rows[:, 784].astype("int64")


def load_mnist(directory=None):
    """MNIST as float32 in [0, 1], shape (n, 28, 28): 5k training subset and the 10k test set.

    Example:

    >>> (x_train, y_train), (x_test, y_test) = load_mnist()
    >>> x_train.shape, x_test.shape
    ((5000, 28, 28), (10000, 28, 28))
    """
    directory = Path(directory) if directory else mnist_dir()
    needed = [MNIST_TRAIN_SUBSET, *MNIST_MD5]
    missing = [name for name in needed if not (directory / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"MNIST files {missing} not found in '{directory}'. Set TFPRUNE_MNIST_DIR to the folder that holds "
            "them, or fetch the official test files with tfprune.data.download_mnist()."
        )
    x_train, y_train = _read_csv_subset(directory / MNIST_TRAIN_SUBSET)
    x_test = read_idx(directory / "t10k-images-idx3-ubyte.gz")
    y_test = read_idx(directory / "t10k-labels-idx1-ubyte.gz").astype("int64")
    return (x_train.astype("float32") / 255.0, y_train), (x_test.astype("float32") / 255.0, y_test)


def _md5(path):
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


def download_mnist(directory, base_url=MNIST_URL):
    """Downloads the official MNIST test files into `directory`, verifying their md5.

    Returns the directory. Raises ConnectionError with advice when the network is unreachable.
    """
    import urllib.error
    import urllib.request

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for name, md5 in MNIST_MD5.items():
        target = directory / name
        if target.is_file() and _md5(target) == md5:
            continue
        partial = target.with_suffix(target.suffix + ".part")
        try:
            with urllib.request.urlopen(base_url + name, timeout=30) as response, open(partial, "wb") as out:
                out.write(response.read())
        except (urllib.error.URLError, OSError) as error:
            partial.unlink(missing_ok=True)
            raise ConnectionError(
                f"Could not download {base_url + name}: {error}. This machine looks offline: copy the MNIST files "
                f"into '{directory}' (or set TFPRUNE_MNIST_DIR) instead."
            ) from error
        if _md5(partial) != md5:
            partial.unlink()
            raise ValueError(f"Downloaded {name} has the wrong checksum (expected md5 {md5}); try again.")
        partial.replace(target)
    return directory


def load_tfds_inputs(spec, limit):
    """Up to `limit` inputs of a TensorFlow Datasets dataset already prepared on this machine.

    `spec` is "NAME" or "NAME:SPLIT" (default split "train"). Datasets are looked up where TFDS keeps them
    (`$TFDS_DATA_DIR`, else ~/tensorflow_datasets); nothing is downloaded. The inputs are the dataset's
    supervised input, or its first feature.

    Example:

    >>> x = load_tfds_inputs("mnist:test", limit=200)
    """
    try:
        import tensorflow_datasets as tfds
    except ImportError as error:
        raise ValueError("tfds: datasets need tensorflow-datasets: pip install tensorflow-datasets.") from error
    name, _, split = spec.partition(":")
    try:
        builder = tfds.builder(name, data_dir=os.environ.get("TFDS_DATA_DIR"))
    except tfds.core.registered.DatasetNotFoundError as error:
        raise ValueError(f"TensorFlow Datasets has no dataset '{name}'.") from error
    if not builder.is_prepared():
        raise ValueError(
            f"TFDS dataset '{name}' is not prepared in {builder.data_dir} and tfprune does not download it. "
            f"Prepare it where there is internet (tfds.builder('{name}').download_and_prepare()) and copy the "
            f"folder here, or point $TFDS_DATA_DIR at a folder that holds it."
        )
    split = split or "train"
    if split not in builder.info.splits:
        raise ValueError(f"TFDS dataset '{name}' has no split '{split}'; it has {sorted(builder.info.splits)}.")
    supervised = builder.info.supervised_keys is not None
    dataset = builder.as_dataset(split=split, as_supervised=supervised).take(limit)
    first = (lambda example: example[0]) if supervised else (lambda example: next(iter(example.values())))
    return np.stack([np.asarray(first(example)) for example in dataset.as_numpy_iterator()])
