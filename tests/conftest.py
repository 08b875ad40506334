import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from tfprune import data  # noqa: E402


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
