"""Spreading a target sparsity over a model's weights by Erdős–Rényi-Kernel (ERK), as RigL does."""

import math

import keras
import numpy as np
import pytest

import tfprune
from tests.conftest import compile_classifier, mlp
from tfprune.selection.distributions import erk_sparsities

L = keras.layers
LENET = [(784, 300), (300, 100), (100, 10)]


def total(sparsities, shapes):
    sizes = [math.prod(shape) for shape in shapes]
    return sum(s * n for s, n in zip(sparsities, sizes)) / sum(sizes)


def test_erk_keeps_densities_in_proportion_to_the_sum_over_the_product_of_dimensions():
    shapes = [(3, 3, 3, 32), (3, 3, 32, 64), (3, 3, 64, 128), (128, 10)]
    sparsities = erk_sparsities(shapes, 0.9)
    assert total(sparsities, shapes) == pytest.approx(0.9)
    raw = [sum(shape) / math.prod(shape) for shape in shapes]
    sparse = [i for i, s in enumerate(sparsities) if s > 0]
    densities = [(1 - sparsities[i]) / raw[i] for i in sparse]
    assert np.allclose(densities, densities[0])  # one scale for every weight not made dense
    assert sparsities[1] < sparsities[2]  # the larger kernel loses more
    # LeNet-300-100 at 90%: the 100x10 classifier would be denser than dense, so it is kept and the others pay
    lenet = erk_sparsities(LENET, 0.9)
    assert lenet[2] == 0 and total(lenet, LENET) == pytest.approx(0.9)
    assert lenet == pytest.approx([0.9204, 0.7698, 0.0], abs=1e-4)
    assert max(erk_sparsities(LENET, 0.99, max_sparsity=0.95)) == pytest.approx(0.95)  # capped: short of 0.99
    with pytest.raises(ValueError, match=r"sparsity in \[0, 1\)"):
        erk_sparsities(LENET, 1.0)


def test_pruning_with_scope_erk_gives_each_weight_its_share_and_the_model_the_target(digits, tmp_path):
    (x, y), _ = digits
    pruned = compile_classifier(tfprune.prune_low_magnitude(
        mlp(), tfprune.PolynomialDecay(0.0, 0.8, 0, 20, frequency=10), scope="erk"))
    pruned.fit(x[:640], y[:640], epochs=1, batch_size=32, verbose=0, callbacks=[tfprune.UpdatePruningStep()])
    report = tfprune.sparsity_report(pruned)
    kernels = [row for row in report["layers"] if row["weight"].endswith("kernel")]
    shapes = [(64, 128), (128, 64), (64, 10)]
    assert [row["sparsity"] for row in kernels] == pytest.approx(erk_sparsities(shapes, 0.8), abs=2e-3)
    assert total([row["sparsity"] for row in kernels], shapes) == pytest.approx(0.8, abs=2e-3)
    assert kernels[0]["sparsity"] > kernels[2]["sparsity"]
    pruned.save(tmp_path / "erk.keras")
    loaded = tfprune.load_model(tmp_path / "erk.keras")
    assert {w.scope for w in tfprune.PruningController(loaded).wrappers} == {"erk"}
    assert tfprune.sparsity_report(loaded)["total"] == report["total"]


def test_erk_is_refused_where_it_cannot_spread_one_target():
    with pytest.raises(ValueError, match="N:M sparsity is local"):
        tfprune.prune_low_magnitude(mlp(), scope="erk", sparsity_m_by_n=(2, 4))
    with pytest.raises(ValueError, match=r"`scope` must be one of \('layer', 'global'\)"):
        tfprune.prune_channels(mlp(), tfprune.ConstantSparsity(0.5, 0), scope="erk")
    model = mlp()
    first = tfprune.prune_low_magnitude(model.layers[0], tfprune.ConstantSparsity(0.5, 0), scope="erk")
    rest = [tfprune.prune_low_magnitude(layer, tfprune.ConstantSparsity(0.8, 0), scope="erk")
            for layer in model.layers[1:]]
    mixed = keras.Sequential([keras.Input((64,)), first, *rest])
    with pytest.raises(ValueError, match="scope='erk' spreads one target .* must share one pruning schedule"):
        tfprune.PruningController(mixed)
