"""Offline datasets: digits, local MNIST files, and the real download code tested against local files."""

import gzip
import hashlib

import numpy as np
import pytest

from tfprune import data


def test_digits_split_shapes_and_range():
    (x_train, y_train), (x_test, y_test) = data.load_digits()
    assert x_train.shape[1:] == (8, 8, 1) and len(x_train) + len(x_test) == 1797
    assert 0.0 <= x_train.min() and x_train.max() <= 1.0 and set(np.unique(y_test)) == set(range(10))


def test_mnist_loads_from_the_shared_files():
    (x_train, y_train), (x_test, y_test) = data.load_mnist()
    assert x_train.shape == (5000, 28, 28) and x_test.shape == (10000, 28, 28)
    assert np.bincount(y_train).tolist() == [500] * 10
    assert x_test.dtype == np.float32 and 0.0 <= x_test.min() and x_test.max() <= 1.0


def test_missing_mnist_folder_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="TFPRUNE_MNIST_DIR"):
        data.load_mnist(tmp_path)


def test_truncated_idx_file_is_detected(tmp_path):
    raw = gzip.open(data.mnist_dir() / "t10k-labels-idx1-ubyte.gz").read()
    bad = tmp_path / "labels.gz"
    bad.write_bytes(gzip.compress(raw[:5000]))
    with pytest.raises(ValueError, match="truncated"):
        data.read_idx(bad)


def test_download_code_fetches_and_verifies_from_a_local_mirror(tmp_path):
    mirror = data.mnist_dir().resolve().as_uri() + "/"
    target = data.download_mnist(tmp_path / "mnist", base_url=mirror)
    for name, md5 in data.MNIST_MD5.items():
        assert hashlib.md5((target / name).read_bytes()).hexdigest() == md5


def test_download_offline_gives_a_clear_error(tmp_path):
    with pytest.raises(ConnectionError, match="offline"):
        data.download_mnist(tmp_path, base_url="http://127.0.0.1:9/")
    assert not list(tmp_path.glob("*.part"))


def test_download_with_wrong_checksum_is_rejected(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for name in data.MNIST_MD5:
        (mirror / name).write_bytes(b"tampered")
    with pytest.raises(ValueError, match="wrong checksum"):
        data.download_mnist(tmp_path / "out", base_url=mirror.as_uri() + "/")
