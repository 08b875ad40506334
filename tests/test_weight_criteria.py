"""Weight criteria beyond magnitude (LAMP, Optimal Brain Damage, movement), gradual and in one shot."""

import keras
import numpy as np
import pytest

import tfprune
from tests.conftest import compile_classifier, loud_but_unread, mlp
from tfprune.criteria.importance import LAMP


def _mask(model, name):
    return keras.ops.convert_to_numpy(model.get_layer(f"prune_low_magnitude_{name}").masks[0]).astype(bool)


def test_lamp_scores_each_entry_by_its_share_of_the_larger_ones():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(30, 7))
    scores = LAMP().entry_scores(values)
    flat, order = values.reshape(-1), np.argsort(np.abs(values.reshape(-1)))
    expected = np.square(flat[order]) / np.cumsum(np.square(flat[order])[::-1])[::-1]
    np.testing.assert_allclose(scores.reshape(-1)[order], expected)
    assert scores.max() == 1.0 and np.argmax(scores) == np.argmax(np.abs(values))  # the largest is never pruned


def test_global_lamp_spreads_sparsity_where_global_magnitude_starves_the_small_scaled_layer():
    model = mlp(hidden=(32,))
    model.layers[-1].kernel.assign(keras.ops.convert_to_numpy(model.layers[-1].kernel) * 0.01)
    by_magnitude = tfprune.prune_once(model, 0.8)
    by_lamp = tfprune.prune_once(model, 0.8, importance="lamp")
    last = model.layers[-1].name
    assert 1 - _mask(by_magnitude, last).mean() == pytest.approx(0.99, abs=0.005)  # held only by the cap
    assert 1 - _mask(by_lamp, last).mean() < 0.9
    assert tfprune.sparsity_report(by_lamp)["total"]["sparsity"] == pytest.approx(0.8, abs=0.002)


def test_obd_in_one_shot_keeps_the_highest_empirical_fisher_times_squared_weight():
    """Least squares: an example's gradient is 2 x'(xw - y) / 3, OBD's score 1/2 mean(g^2) w^2 (the empirical
    Fisher: one example per batch)."""
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 6)).astype("float32") * np.arange(1, 7, dtype="float32")
    y = rng.normal(size=(64, 3)).astype("float32")
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3, use_bias=False, name="linear")])
    model.compile("sgd", "mse")
    w = keras.ops.convert_to_numpy(model.layers[0].kernel)
    squares = np.mean([np.square(2 * np.outer(xi, xi @ w - yi) / 3) for xi, yi in zip(x, y)], axis=0)  # mse: / 3
    scores = 0.5 * squares * np.square(w)
    mask = _mask(tfprune.prune_once(model, 0.5, importance="obd", data=(x, y)), "linear")
    assert scores[~mask].max() <= scores[mask].min()
    assert not (mask == (np.abs(w) >= np.median(np.abs(w)))).all()  # not what magnitude keeps


def test_obs_keeps_the_lowest_cost_weights_and_moves_the_rest_to_reconstruct_the_outputs():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(512, 8)) @ rng.normal(size=(8, 8))).astype("float32")  # correlated inputs
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4, use_bias=False, name="linear")])
    w = keras.ops.convert_to_numpy(model.layers[0].kernel).astype(np.float64)
    pruned = tfprune.prune_once(model, 0.5, importance="obs", data=x, distribution="uniform")
    keep = _mask(pruned, "linear")
    hessian = x.T.astype(np.float64) @ x / len(x)
    hessian += 0.01 * np.mean(np.diag(hessian)) * np.eye(8)
    costs = np.square(w) / np.diag(np.linalg.inv(hessian))[:, None]
    assert costs[~keep].max() <= costs[keep].min()
    new = keras.ops.convert_to_numpy(pruned.layers[0].layer.kernel)
    assert (new[~keep] == 0).all()
    for j in range(4):  # each output's kept weights solve its least squares on the inputs they keep
        rest = keep[:, j]
        best = np.linalg.solve(hessian[np.ix_(rest, rest)], hessian[rest] @ w[:, j])
        np.testing.assert_allclose(new[rest, j], best, rtol=1e-4, atol=1e-5)
    error = np.mean(np.square(x @ (new - w))), np.mean(np.square(x @ (np.where(keep, w, 0) - w)))
    assert error[0] < 0.8 * error[1]


def test_obd_skips_an_update_before_any_gradient_and_warns():
    model, x, y = loud_but_unread()
    schedule = tfprune.ConstantSparsity(0.5, begin_step=1, frequency=4)  # the first batch: nothing recorded yet
    pruned = compile_classifier(tfprune.prune_low_magnitude(model, schedule, importance="obd"))
    with pytest.warns(UserWarning, match="The masks do not update at step 1"):
        pruned.fit(x[:64], y[:64], batch_size=32, epochs=1, verbose=0, callbacks=[tfprune.UpdatePruningStep()])
    assert _mask(pruned, "hidden").all()
    pruned.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[tfprune.UpdatePruningStep()])
    assert _mask(pruned, "hidden").mean() == 0.5


@pytest.mark.parametrize("importance", ["obd", "lamp"])
def test_gradual_pruning_by_a_criterion_through_fit(importance):
    model, x, y = loud_but_unread()
    schedule = tfprune.PolynomialDecay(0.0, 0.5, begin_step=0, end_step=16, frequency=4)
    pruned = compile_classifier(tfprune.prune_low_magnitude(model, schedule, scope="global", importance=importance))
    pruned.fit(x, y, batch_size=32, epochs=2, verbose=0, callbacks=[tfprune.UpdatePruningStep()])
    assert tfprune.sparsity_report(pruned)["total"]["sparsity"] == pytest.approx(0.5, abs=0.01)
    hidden = _mask(pruned, "hidden")
    if importance == "obd":  # the Fisher of the training batches: the loud columns the loss ignores go
        assert hidden[:, :8].mean() < 0.5 < hidden[:, 8:].mean()
    else:  # by magnitude: the loud columns stay
        assert hidden[:, :8].mean() > 0.5 > hidden[:, 8:].mean()


def test_movement_prunes_weights_moving_to_zero_before_small_ones_moving_away():
    """y = sum of the first 4 inputs; the last 4 weights start large and shrink, the first 4 small and grow."""
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(512, 8)).astype("float32")
    y = x[:, :4].sum(axis=1, keepdims=True)
    pruned = {}
    for importance in ("movement", "magnitude"):
        model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(1, use_bias=False, name="linear")])
        model.layers[0].kernel.assign(np.array([[0.1]] * 4 + [[3.0]] * 4, "float32"))
        schedule = tfprune.ConstantSparsity(0.5, begin_step=16, frequency=16)
        wrapped = tfprune.prune_low_magnitude(model, schedule, importance=importance)
        wrapped.compile(keras.optimizers.SGD(0.01), "mse")
        wrapped.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[tfprune.UpdatePruningStep()])
        pruned[importance] = _mask(wrapped, "linear").reshape(-1)
    np.testing.assert_array_equal(pruned["movement"], [True] * 4 + [False] * 4)
    np.testing.assert_array_equal(pruned["magnitude"], [False] * 4 + [True] * 4)


def test_gradient_criteria_say_when_they_cannot_score():
    model, x, y = loud_but_unread()
    pruned = tfprune.prune_low_magnitude(model, importance="obd")
    with pytest.raises(ValueError, match=r"OBD scores weights by the training gradients.*tfprune.prune_once"):
        tfprune.PruningController(pruned).prune_to(0.5)
    with pytest.raises(ValueError, match=r"OBD scores weights by the loss's gradients: give data"):
        tfprune.prune_once(model, 0.5, importance="obd")
    with pytest.raises(ValueError, match="Taylor scores channels"):
        tfprune.prune_low_magnitude(model, importance="taylor")
    with pytest.raises(ValueError, match="OBD scores single weights"):
        tfprune.prune_channels(model, tfprune.ConstantSparsity(0.5), importance="obd")
    with pytest.raises(ValueError, match="OBS scores weights in one shot, from data"):
        tfprune.prune_low_magnitude(model, importance="obs")
    tokens = keras.Input((4, 8))
    attention = keras.Model(tokens, keras.layers.MultiHeadAttention(2, 4)(tokens, tokens))
    with pytest.raises(ValueError, match="OBS handles Dense and Conv2D layers"):
        tfprune.prune_once(attention, 0.5, importance="obs", data=np.zeros((4, 4, 8), "float32"))


def test_saliency_ranks_by_the_first_order_loss_change_in_one_shot_and_while_training():
    model, x, y = loud_but_unread()
    once = tfprune.prune_once(model, 0.5, importance="saliency", data=(x, y), distribution="uniform")
    snipped = tfprune.snip(model, (x, y), 0.5, distribution="uniform")
    np.testing.assert_array_equal(_mask(once, "hidden"), _mask(snipped, "hidden"))  # SNIP is this criterion at init
    schedule = tfprune.ConstantSparsity(0.5, begin_step=8, frequency=8)
    gradual = compile_classifier(tfprune.prune_low_magnitude(model, schedule, importance="saliency"))
    gradual.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[tfprune.UpdatePruningStep()])
    hidden = _mask(gradual, "hidden")
    assert hidden.mean() == 0.5 and hidden[:, :8].mean() < hidden[:, 8:].mean()  # the loud unread columns go


def test_the_importance_is_saved_with_the_model(tmp_path):
    model, x, y = loud_but_unread()
    pruned = compile_classifier(tfprune.prune_low_magnitude(model, scope="global", importance="lamp"))
    pruned.save(tmp_path / "lamp.keras")
    loaded = tfprune.load_model(tmp_path / "lamp.keras")
    assert isinstance(loaded.get_layer("prune_low_magnitude_hidden").importance, LAMP)
