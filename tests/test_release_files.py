"""`.keras` files written by the previous release (tfprune 0.1.0, commit 080db86) load and resume: a model
pruned by weights with a user's container inside, and a channel-pruned one (tests/data/release_0.1.0)."""

from pathlib import Path

import numpy as np
import pytest

import tests.container_models  # noqa: F401 - registers ResidualBlock, which the first file holds
import tfprune

RELEASE = Path(__file__).parent / "data" / "release_0.1.0"


@pytest.fixture(scope="module")
def expected():
    with np.load(RELEASE / "expected.npz") as arrays:
        return dict(arrays)


def test_a_weight_pruned_model_of_the_previous_release_loads_and_resumes_its_schedule(expected):
    model = tfprune.load_model(RELEASE / "weights_pruned.keras")
    np.testing.assert_allclose(model.predict(expected["x"], verbose=0), expected["weights_pruned"], atol=1e-6)
    assert tfprune.PruningController(model).step == int(expected["weights_step"]) == 4
    rng = np.random.default_rng(1)
    model.fit(rng.normal(size=(32, 8)), rng.normal(size=(32, 4)), batch_size=8, verbose=0,
              callbacks=[tfprune.UpdatePruningStep()])  # steps 5..8: the schedule's end
    assert tfprune.sparsity_report(model)["total"]["sparsity"] == pytest.approx(0.5, abs=0.01)


def test_a_channel_pruned_model_of_the_previous_release_loads_and_shrinks(expected):
    model = tfprune.load_model(RELEASE / "channels_pruned.keras")
    np.testing.assert_allclose(model.predict(expected["x"], verbose=0), expected["channels_pruned"], atol=1e-6)
    small = tfprune.shrink(model, verbose=False)
    assert small.get_layer("hidden").units == 8
    np.testing.assert_allclose(small.predict(expected["x"], verbose=0), expected["channels_pruned"], atol=1e-5)
