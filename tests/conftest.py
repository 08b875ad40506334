import functools
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from tfprune import data  # noqa: E402

# Whole directories that test TensorFlow-only behaviour.
TENSORFLOW_ONLY_DIRECTORIES = {"tfmot_compat": "tfmot's own tests, written for TensorFlow (tf.test.TestCase, tf.function)"}


def pytest_collection_modifyitems(config, items):
    """Under another backend, tests of TensorFlow-only features (marked `tensorflow_only(reason)`) are skipped
    with their reason (tf.function, tf.distribute, tfmot's own tests), and so are the tests that start the backends
    they test in processes of their own (marked `own_backend_processes`): they ran in the TensorFlow pass."""
    if keras.backend.backend() == "tensorflow":
        return
    for item in items:
        marker = item.get_closest_marker("tensorflow_only")
        reason = marker.args[0] if marker else next(
            (why for folder, why in TENSORFLOW_ONLY_DIRECTORIES.items() if folder in item.path.parts), None)
        if reason:
            item.add_marker(pytest.mark.skip(reason=f"TensorFlow only: {reason}"))
        elif item.get_closest_marker("own_backend_processes"):
            item.add_marker(pytest.mark.skip(reason="starts its backends in processes of its own: run once, in the "
                                                    "TensorFlow pass"))


@pytest.fixture(scope="session")
def digits():
    """Digits flattened to 64 features: ((x_train, y_train), (x_test, y_test))."""
    (x_train, y_train), (x_test, y_test) = data.load_digits()
    return (x_train.reshape(-1, 64), y_train), (x_test.reshape(-1, 64), y_test)


def mlp(hidden=(128, 64), seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [keras.Input((64,))] + [keras.layers.Dense(h, activation="relu") for h in hidden] + [keras.layers.Dense(10)]
    )


def compile_classifier(model, learning_rate=1e-3):
    model.compile(
        keras.optimizers.Adam(learning_rate),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def accuracy(model, x, y):
    return float(np.mean(np.argmax(model.predict(x, verbose=0), axis=-1) == y))


@functools.cache  # TFDS registers builder classes by name: define it once per process
def _tiny_tfds_builder():
    import tensorflow_datasets as tfds

    class TinyDigitsForTfprune(tfds.core.GeneratorBasedBuilder):
        VERSION = tfds.core.Version("1.0.0")
        __module__ = "tiny_digits"  # one part: TFDS looks for no package resources of a dotted `tests.conftest`

        def _info(self):
            features = {"image": tfds.features.Tensor(shape=(8, 8), dtype=np.float32),
                        "label": tfds.features.ClassLabel(num_classes=10)}
            return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(features),
                                         supervised_keys=("image", "label"))

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples(60), "test": self._generate_examples(20)}

        def _generate_examples(self, n):
            rng = np.random.default_rng(n)
            for i in range(n):
                yield i, {"image": rng.random((8, 8), dtype=np.float32), "label": i % 10}

    return TinyDigitsForTfprune


def prepare_tiny_tfds_dataset(data_dir):
    """A TFDS dataset built here from a generator (no download): 8x8 float images, supervised. Returns its name."""
    _tiny_tfds_builder()(data_dir=str(data_dir)).download_and_prepare()
    return "tiny_digits_for_tfprune"


def loud_but_unread():
    """A compiled Dense(16) -> Dense(3) classifier whose hidden units 0-7 have large weights (large norms) that the
    output hardly reads (small gradients), and 8-15 small ones it does; with inputs and the labels it predicts."""
    keras.utils.set_random_seed(0)
    model = compile_classifier(keras.Sequential([
        keras.Input((6,)), keras.layers.Dense(16, activation="relu", name="hidden"), keras.layers.Dense(3, name="out")]))
    rng = np.random.default_rng(0)
    kernel, rows = rng.normal(size=(6, 16)), rng.normal(size=(16, 3))
    kernel[:, :8] *= 10
    rows[:8] *= 1e-3
    model.get_layer("hidden").set_weights([kernel, np.full(16, 0.1)])
    model.get_layer("out").set_weights([rows, np.zeros(3)])
    x = rng.normal(size=(256, 6)).astype("float32")
    return model, x, np.argmax(model.predict(x, verbose=0), axis=-1)
