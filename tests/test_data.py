"""Offline datasets: digits, the MNIST readers on small files made here, the real download code against a
local HTTP server. Nothing outside the repository is read: the full MNIST files are for benchmarks."""

import functools
import gzip
import hashlib
import http.server
import socket
import struct
import threading

import numpy as np
import pytest

from tfprune import data

TEST_IMAGES, TEST_LABELS, TRAIN_SUBSET = "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", "mnist_5k.csv.gz"


def test_digits_split_shapes_and_range():
    (x_train, y_train), (x_test, y_test) = data.load_digits()
    assert x_train.shape[1:] == (8, 8, 1) and len(x_train) + len(x_test) == 1797
    assert 0.0 <= x_train.min() and x_train.max() <= 1.0 and set(np.unique(y_test)) == set(range(10))


def idx_bytes(array):
    """`array` as an unsigned-byte IDX file: big-endian header (0, 0x08, ndim, dims), then the bytes."""
    return struct.pack(f">HBB{array.ndim}I", 0, 8, array.ndim, *array.shape) + array.astype(np.uint8).tobytes()


def csv_gz(images, labels):
    rows = [",".join(map(str, [*image.ravel(), label])) for image, label in zip(images, labels)]
    return gzip.compress(("\n".join(rows) + "\n").encode())


@pytest.fixture
def small_mnist(tmp_path):
    """A folder with the three MNIST files in their real formats, but small: (folder, train arrays, test arrays)."""
    rng = np.random.default_rng(0)
    x_train, y_train = rng.integers(0, 256, (20, 28, 28), dtype=np.uint8), np.repeat(np.arange(10), 2)
    x_test, y_test = rng.integers(0, 256, (3, 28, 28), dtype=np.uint8), np.array([7, 2, 1], np.uint8)
    folder = tmp_path / "mnist"
    folder.mkdir()
    (folder / TEST_IMAGES).write_bytes(gzip.compress(idx_bytes(x_test)))
    (folder / TEST_LABELS).write_bytes(gzip.compress(idx_bytes(y_test)))
    (folder / TRAIN_SUBSET).write_bytes(csv_gz(x_train, y_train))
    return folder, (x_train, y_train), (x_test, y_test)


def test_idx_reader_reads_shape_and_values_plain_and_gzipped(tmp_path):
    images = np.arange(2 * 3 * 4).reshape(2, 3, 4).astype(np.uint8) * 10
    (tmp_path / "images.idx").write_bytes(idx_bytes(images))
    (tmp_path / "labels.idx.gz").write_bytes(gzip.compress(idx_bytes(np.array([9, 0, 255]))))
    read = data.read_idx(tmp_path / "images.idx")
    assert read.dtype == np.uint8 and read.shape == (2, 3, 4) and np.array_equal(read, images)
    assert data.read_idx(tmp_path / "labels.idx.gz").tolist() == [9, 0, 255]


@pytest.mark.parametrize("cut, error", [(-1, "truncated: header says"), (6, "header ends after"), (2, "only 2 bytes")])
def test_truncated_idx_file_is_detected(tmp_path, cut, error):
    path = tmp_path / "labels.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.arange(10))[:cut]))
    with pytest.raises(ValueError, match=error):
        data.read_idx(path)


def test_idx_file_of_another_type_is_rejected(tmp_path):
    path = tmp_path / "floats.idx"
    path.write_bytes(struct.pack(">HBBI", 0, 0x0D, 1, 1) + struct.pack(">f", 1.0))  # 0x0D: float32
    with pytest.raises(ValueError, match="not an unsigned-byte IDX file"):
        data.read_idx(path)


@pytest.mark.parametrize("damage", [lambda raw: raw[: len(raw) // 2], lambda raw: b"not gzip" + raw])
def test_cut_or_corrupt_gzip_gives_a_clear_error(tmp_path, damage):
    path = tmp_path / "labels.gz"
    path.write_bytes(damage(gzip.compress(idx_bytes(np.arange(5000) % 256))))
    with pytest.raises(ValueError, match="truncated or corrupt.*fetch it again"):
        data.read_idx(path)


def test_csv_reader_splits_pixels_and_labels(tmp_path):
    images, labels = np.stack([np.full((28, 28), 255), np.eye(28) * 3]).astype(np.uint8), np.array([4, 9])
    (tmp_path / "two.csv.gz").write_bytes(csv_gz(images, labels))
    read_images, read_labels = data.read_mnist_csv(tmp_path / "two.csv.gz")
    assert read_images.dtype == np.uint8 and np.array_equal(read_images, images)
    assert read_labels.tolist() == [4, 9]


@pytest.mark.parametrize(
    "text, error",
    [
        ("1,2,3\n", "3 values per row"),
        ("0," * 784 + "10\n", "labels outside 0-9"),
        ("0," * 783 + "256,1\n", "pixel values outside 0-255"),
        ("0," * 784 + "seven\n", "not an MNIST CSV file"),
        ("0," * 784 + "1\n" + "0," * 10 + "1\n", "not an MNIST CSV file"),  # a short row
    ],
)
def test_malformed_csv_is_rejected(tmp_path, text, error):
    path = tmp_path / "bad.csv.gz"
    path.write_bytes(gzip.compress(text.encode()))
    with pytest.raises(ValueError, match=error):
        data.read_mnist_csv(path)


def test_load_mnist_reads_the_folder_in_tfprune_mnist_dir_scaled_to_unit_floats(small_mnist, monkeypatch):
    folder, (x_train, y_train), (x_test, y_test) = small_mnist
    monkeypatch.setenv("TFPRUNE_MNIST_DIR", str(folder))
    (xa, ya), (xb, yb) = data.load_mnist()
    assert xa.dtype == xb.dtype == np.float32 and ya.dtype == yb.dtype == np.int64
    np.testing.assert_array_equal(xa * 255, x_train)
    np.testing.assert_array_equal(xb * 255, x_test)
    assert ya.tolist() == y_train.tolist() and yb.tolist() == [7, 2, 1]


def test_test_images_and_labels_must_have_the_same_count(small_mnist):
    folder = small_mnist[0]
    (folder / TEST_LABELS).write_bytes(gzip.compress(idx_bytes(np.array([1, 2]))))
    with pytest.raises(ValueError, match="3 test images but 2 test labels"):
        data.load_mnist(folder)


def test_missing_files_error_names_each_file_its_source_and_the_command(small_mnist):
    folder = small_mnist[0]
    (folder / TRAIN_SUBSET).unlink()
    with pytest.raises(FileNotFoundError) as error:
        data.load_mnist(folder)
    message = str(error.value)
    assert f"missing from '{folder}': {TRAIN_SUBSET}." in message and TEST_IMAGES not in message
    assert f"download_mnist({str(folder)!r})" in message
    assert f"{TRAIN_SUBSET}  {data.MNIST_FILES[TRAIN_SUBSET][0]}" in message


def test_mnist_dir_is_the_env_folder_else_the_project_copy_else_the_user_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "PROJECT_MNIST_DIR", tmp_path / "shared")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("TFPRUNE_MNIST_DIR", raising=False)
    assert data.mnist_dir() == tmp_path / "cache" / "tfprune" / "mnist"
    (tmp_path / "shared").mkdir()
    assert data.mnist_dir() == tmp_path / "shared"
    monkeypatch.setenv("TFPRUNE_MNIST_DIR", str(tmp_path / "mine"))
    assert data.mnist_dir() == tmp_path / "mine"
    with pytest.raises(FileNotFoundError, match=r"download_mnist\(\)"):  # the default folder: no argument needed
        data.load_mnist()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def serve(tmp_path):
    """Serves tmp_path/site over HTTP on 127.0.0.1; yields (folder, base URL). Stops on teardown."""
    site = tmp_path / "site"
    site.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=site))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield site, f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def closed_port_url():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def publish(small_mnist, site, base_url, monkeypatch):
    """Copies the small files to the served folder and makes them the official sources, with their md5."""
    sources = {}
    for name in data.MNIST_FILES:
        raw = (small_mnist[0] / name).read_bytes()
        (site / name).write_bytes(raw)
        sources[name] = (f"{base_url}/{name}", hashlib.md5(raw).hexdigest())
    monkeypatch.setattr(data, "MNIST_FILES", sources)


def test_download_then_load_works_and_valid_files_are_not_fetched_again(small_mnist, serve, tmp_path, monkeypatch):
    site, base_url = serve
    publish(small_mnist, site, base_url, monkeypatch)
    monkeypatch.setenv("TFPRUNE_MNIST_DIR", str(tmp_path / "fresh"))
    assert data.download_mnist() == tmp_path / "fresh"
    (_, y_train), (x_test, _) = data.load_mnist()
    np.testing.assert_array_equal(x_test * 255, small_mnist[2][0])
    assert y_train.tolist() == small_mnist[1][1].tolist()
    for name in data.MNIST_FILES:
        (site / name).unlink()  # the server now answers 404: a second call must not need it
    data.download_mnist()
    assert sorted(p.name for p in (tmp_path / "fresh").iterdir()) == sorted(data.MNIST_FILES)


def test_download_from_a_mirror_folder(small_mnist, serve, tmp_path, monkeypatch):
    site, _ = serve
    publish(small_mnist, site, closed_port_url(), monkeypatch)  # official sources unreachable
    data.download_mnist(tmp_path / "out", mirror=site.as_uri())
    assert data.load_mnist(tmp_path / "out")[1][1].tolist() == [7, 2, 1]


def test_download_with_wrong_checksum_is_rejected_and_leaves_nothing(small_mnist, serve, tmp_path, monkeypatch):
    site, base_url = serve
    publish(small_mnist, site, base_url, monkeypatch)
    (site / TEST_LABELS).write_bytes(b"tampered")
    with pytest.raises(ValueError, match=f"{TEST_LABELS} from {base_url}/{TEST_LABELS} has the wrong checksum"):
        data.download_mnist(tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [TEST_IMAGES]  # the good file before it


def test_download_offline_gives_a_clear_error_and_leaves_no_partial_file(small_mnist, serve, tmp_path, monkeypatch):
    publish(small_mnist, serve[0], closed_port_url(), monkeypatch)
    with pytest.raises(ConnectionError, match=f"copy {TEST_IMAGES} from a machine with internet into"):
        data.download_mnist(tmp_path / "out")
    assert not list((tmp_path / "out").iterdir())
