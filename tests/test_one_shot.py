"""Pruning at initialization: SNIP and GraSP score weights by the loss's gradients before training, masks fixed."""

import keras
import numpy as np
import pytest

import tfprune
from tests.conftest import compile_classifier, loud_but_unread, mlp
from tfprune.criteria.gradients import hessian_products, loss_gradients

L = keras.layers


def test_gradients_and_hessian_products_of_least_squares_are_the_analytic_ones():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((5,)), L.Dense(1, use_bias=False)])
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 5)).astype("float32")
    y = x @ rng.normal(size=(5, 1)).astype("float32")
    kernel = model.layers[0].kernel
    w = keras.ops.convert_to_numpy(kernel)
    batches = [(x[:32], y[:32]), (x[32:], y[32:])]  # fit's batches of 32: the mean squared error of each, summed
    (gradient,) = loss_gradients(model, (x, y), "mse", [kernel])
    np.testing.assert_allclose(gradient, sum(2 * xb.T @ (xb @ w - yb) / 32 for xb, yb in batches), atol=1e-4)
    v = rng.normal(size=(5, 1)).astype("float32")
    (product,) = hessian_products(model, (x, y), "mse", [kernel], [v])
    np.testing.assert_allclose(product, sum(2 * xb.T @ xb / 32 for xb, _ in batches) @ v, atol=1e-3)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(kernel), w)  # both passes leave the weights


@pytest.mark.parametrize("iterations", [1, 3])
def test_snip_prunes_what_the_loss_does_not_read_and_the_masks_stay_through_fit(iterations):
    model, x, y = loud_but_unread()
    pruned = tfprune.snip(model, (x, y), 0.5, distribution="uniform", iterations=iterations)
    hidden = pruned.get_layer("prune_low_magnitude_hidden")
    mask = keras.ops.convert_to_numpy(hidden.masks[0]).astype(bool)
    assert mask.mean() == 0.5  # "uniform": every weight at the target
    assert mask[:, :8].mean() < 0.2 < 0.8 < mask[:, 8:].mean()  # magnitude would keep the loud columns instead
    compile_classifier(pruned).fit(x, y, epochs=1, batch_size=32, verbose=0, callbacks=[tfprune.UpdatePruningStep()])
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(hidden.masks[0]).astype(bool), mask)
    kernel = keras.ops.convert_to_numpy(hidden.layer.kernel)
    assert (kernel[~mask] == 0).all() and (kernel[mask] != 0).all()


def test_grasp_prunes_the_lowest_w_times_hg_over_all_weights():
    model, x, y = loud_but_unread()
    pruned = tfprune.grasp(model, (x, y), 0.6, temperature=1)
    report = tfprune.sparsity_report(pruned)
    assert report["total"]["sparsity"] == pytest.approx(0.6, abs=0.01)
    weights = [model.get_layer(name).kernel for name in ("hidden", "out")]
    gradients = loss_gradients(model, (x, y), model.loss, weights)
    scores = [keras.ops.convert_to_numpy(w) * hg
              for w, hg in zip(weights, hessian_products(model, (x, y), model.loss, weights, gradients))]
    masks = [keras.ops.convert_to_numpy(pruned.get_layer(f"prune_low_magnitude_{name}").masks[0]).astype(bool)
             for name in ("hidden", "out")]
    kept = np.concatenate([s[m] for s, m in zip(scores, masks)])
    dropped = np.concatenate([s[~m] for s, m in zip(scores, masks)])
    assert dropped.max() <= kept.min() + 1e-6 * np.abs(kept).max()  # one threshold over both layers


def test_grasp_divides_logits_by_its_temperature():
    model, x, y = loud_but_unread()
    logits = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    weights = [model.get_layer(name).kernel for name in ("hidden", "out")]
    gradients = loss_gradients(model, (x, y), lambda t, p: logits.call(t, p / 200), weights)
    scores = [keras.ops.convert_to_numpy(w) * hg for w, hg in zip(
        weights, hessian_products(model, (x, y), lambda t, p: logits.call(t, p / 200), weights, gradients))]
    tempered = tfprune.grasp(model, (x, y), 0.6, loss=logits)  # T = 200 by default for a loss of logits
    masks = [keras.ops.convert_to_numpy(tempered.get_layer(f"prune_low_magnitude_{name}").masks[0]).astype(bool)
             for name in ("hidden", "out")]
    kept = np.concatenate([s[m] for s, m in zip(scores, masks)])
    dropped = np.concatenate([s[~m] for s, m in zip(scores, masks)])
    assert dropped.max() <= kept.min() + 1e-6 * np.abs(kept).max()
    untempered = tfprune.grasp(model, (x, y), 0.6, loss=logits, temperature=1)
    assert any((keras.ops.convert_to_numpy(a.masks[0]) != keras.ops.convert_to_numpy(b.masks[0])).any()
               for a, b in zip(tfprune.PruningController(tempered).wrappers,
                               tfprune.PruningController(untempered).wrappers) if a.masks)


@pytest.mark.parametrize("call, message", [
    (lambda m, d: tfprune.snip(m, d, 1.0), r"`sparsity` must be in \(0, 1\)"),
    (lambda m, d: tfprune.snip(m, d, 0.5, distribution="random"), "`distribution` must be one of"),
    (lambda m, d: tfprune.snip(m, None, 0.5), r"give data=\(x, y\)"),
    (lambda m, d: tfprune.grasp(keras.Sequential(m.layers), d, 0.5), "Give loss="),
    (lambda m, d: tfprune.snip(m, d, 0.5, iterations=0), "`iterations` must be an integer >= 1"),
    (lambda m, d: tfprune.grasp(m, d, 0.5, loss="mse", temperature=200), "does not take logits"),
    (lambda m, d: tfprune.snip(m, (d[0][:, :32], d[1]), 0.5), r"(?s)`data` does not fit model .* expected axis -1"),
])
def test_bad_arguments_are_named(call, message):
    model = compile_classifier(mlp())
    with pytest.raises(ValueError, match=message):
        call(model, (np.zeros((4, 64), "float32"), np.zeros(4, "int64")))


def test_the_scoring_pass_leaves_no_trace_of_its_optimizer_and_takes_sample_weights(tmp_path):
    model, x, y = loud_but_unread()
    pruned = tfprune.snip(model, (x, y, np.ones(len(x), "float32")), 0.5)
    assert type(pruned.optimizer).__name__ == "Adam"  # compiled as the model was, not with the scoring optimizer
    pruned.fit(x, y, epochs=1, verbose=0, callbacks=[tfprune.UpdatePruningStep()])
    pruned.save(tmp_path / "snip.keras")
    loaded = tfprune.load_model(tmp_path / "snip.keras")
    assert isinstance(loaded.layers[0].pruning_schedule, tfprune.FixedMasks)
    uncompiled = keras.Sequential([keras.Input((6,)), L.Dense(16, activation="relu"), L.Dense(3)])
    uncompiled.set_weights(model.get_weights())
    pruned = tfprune.grasp(uncompiled, (x, y), 0.5, loss="sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match="compile"):  # asks for compile() instead of training with the scorer
        pruned.fit(x, y, epochs=1, verbose=0, callbacks=[tfprune.UpdatePruningStep()])


def test_fixed_masks_without_snip_or_grasp_warn_that_the_model_stays_dense():
    with pytest.warns(UserWarning, match="FixedMasks does not set the first masks, so this model stays dense"):
        tfprune.prune_low_magnitude(mlp(), tfprune.FixedMasks(0.5))


def test_mixed_precision_is_refused_for_scoring():
    keras.mixed_precision.set_global_policy("mixed_float16")  # as Keras wraps the optimizer: loss scaling
    try:
        with pytest.raises(ValueError, match="mixed_float16.*set_global_policy\\('float32'\\)"):
            tfprune.snip(compile_classifier(mlp()), (np.zeros((4, 64), "float32"), np.zeros(4, "int64")), 0.5)
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_a_layer_that_needs_its_input_shape_stays_a_build_error():
    wrapper = tfprune.PruneLowMagnitude(keras.layers.Dense(4))  # unbuilt, and not weightless: not built on the fly
    with pytest.raises(ValueError, match="is not built yet"):
        tfprune.apply.wrapper.check_built([wrapper])
