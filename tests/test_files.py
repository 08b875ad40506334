"""Files are written complete or not at all: bytes, and Keras models saved once beside their target."""

import os

import keras
import numpy as np
import pytest

from tfprune.files import atomic_save, atomic_write


def test_a_model_is_saved_whole_and_loads(tmp_path):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    atomic_save(model, tmp_path / "m.keras")
    assert os.listdir(tmp_path) == ["m.keras"]
    x = np.ones((1, 3), "float32")
    np.testing.assert_allclose(keras.models.load_model(tmp_path / "m.keras")(x), model(x))


def test_a_failed_write_leaves_the_old_file_and_no_temporary_one(tmp_path):
    class Unsavable:
        def save(self, path):
            open(path, "wb").write(b"half")
            raise OSError("disk full")

    atomic_write(tmp_path / "m.keras", b"old")
    with pytest.raises(OSError, match="disk full"):
        atomic_save(Unsavable(), tmp_path / "m.keras")
    assert os.listdir(tmp_path) == ["m.keras"] and (tmp_path / "m.keras").read_bytes() == b"old"
