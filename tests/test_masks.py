import warnings

import keras
import numpy as np
import pytest
from keras import ops

import tfprune
from tfprune import masks
from tfprune.layers.axes import WeightAxes


def _np(x):
    return ops.convert_to_numpy(x)


def test_unstructured_mask_prunes_exactly_round_sparsity_times_size_smallest():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(37, 11)).astype("float32")
    mask = _np(masks.threshold_masks([np.abs(w)], 0.63, masks.Granularity())[0])
    assert mask.shape == w.shape
    assert int((mask == 0).sum()) == round(0.63 * w.size)
    kept, pruned = np.abs(w)[mask == 1], np.abs(w)[mask == 0]
    assert kept.min() >= pruned.max()


def test_zero_sparsity_keeps_everything():
    mask = _np(masks.threshold_masks([np.ones((4, 4))], 0.0, masks.Granularity())[0])
    assert mask.sum() == 16


def test_block_mask_prunes_whole_blocks_with_exact_block_count():
    rng = np.random.default_rng(1)
    w = rng.normal(size=(8, 12)).astype("float32")
    g = masks.Granularity(block_size=(2, 3))
    mask = _np(masks.threshold_masks([np.abs(w)], 0.5, g)[0])
    blocks = mask.reshape(4, 2, 4, 3).transpose(0, 2, 1, 3).reshape(16, 6)
    assert set(np.unique(blocks.sum(axis=1))) <= {0.0, 6.0}
    assert int((blocks.sum(axis=1) == 0).sum()) == 8


def test_block_pooling_max_vs_avg_pick_different_blocks():
    w = np.array([[10.0, 0.0, 3.0, 3.0]], dtype="float32")  # block A: avg 5, max 10; block B: avg 3, max 3
    avg = _np(masks.threshold_masks([w], 0.5, masks.Granularity((1, 2), "AVG"))[0])
    mx = _np(masks.threshold_masks([w], 0.5, masks.Granularity((1, 2), "MAX"))[0])
    np.testing.assert_array_equal(avg, [[1, 1, 0, 0]])
    np.testing.assert_array_equal(mx, [[1, 1, 0, 0]])
    w2 = np.array([[6.0, 0.0, 4.0, 4.0]], dtype="float32")  # avg 3 vs 4 -> B kept; max 6 vs 4 -> A kept
    np.testing.assert_array_equal(_np(masks.threshold_masks([w2], 0.5, masks.Granularity((1, 2), "AVG"))[0]), [[0, 0, 1, 1]])
    np.testing.assert_array_equal(_np(masks.threshold_masks([w2], 0.5, masks.Granularity((1, 2), "MAX"))[0]), [[1, 1, 0, 0]])


def test_block_mask_on_conv_kernel_blocks_along_input_channels():
    rng = np.random.default_rng(2)
    w = rng.normal(size=(3, 3, 8, 4)).astype("float32")
    mask = _np(masks.threshold_masks([np.abs(w)], 0.75, masks.Granularity(block_size=(4, 1)))[0])
    groups = mask.reshape(3, 3, 2, 4, 4)  # (kh, kw, block, within-block, out)
    assert np.all(groups.min(axis=3) == groups.max(axis=3))
    assert int((mask == 0).sum()) == round(0.75 * 3 * 3 * 2 * 4) * 4


def test_m_by_n_keeps_m_largest_in_every_group_along_input_axis():
    rng = np.random.default_rng(3)
    w = rng.normal(size=(16, 5)).astype("float32")
    mask = _np(masks.m_by_n_mask(np.abs(w), 2, 4))
    groups = mask.reshape(4, 4, 5)
    assert np.all(groups.sum(axis=1) == 2)
    a = np.abs(w).reshape(4, 4, 5)
    assert np.all(np.where(groups == 1, a, np.inf).min(axis=1) >= np.where(groups == 0, a, -np.inf).max(axis=1))


def test_m_by_n_on_conv_kernel_zeroes_m_of_every_n():
    w = np.random.default_rng(4).normal(size=(3, 3, 8, 6)).astype("float32")
    mask = _np(masks.m_by_n_mask(np.abs(w), 1, 4))
    assert np.all(mask.reshape(3, 3, 2, 4, 6).sum(axis=3) == 3)


def test_every_weight_keeps_at_least_one_unit_as_in_tfmot():
    w = np.arange(1, 41, dtype="float32").reshape(8, 5)
    assert int(masks.threshold_masks([w], 0.99, masks.Granularity())[0].sum()) == 1
    blocks = masks.threshold_masks([w], 0.99, masks.Granularity((2, 5)))[0]
    assert int(blocks.sum()) == 10 and blocks[-2:].all()  # one whole block, the largest
    tiny, big = masks.threshold_masks([np.full((2, 2), 1e-3), w], 0.9, masks.Granularity())
    assert int(tiny.sum()) == 1  # global ranking would prune all of it


def test_global_ranking_caps_each_weight_and_redistributes_the_rest():
    small = np.full((10, 10), 0.1, dtype="float32")
    large = np.arange(1, 101, dtype="float32").reshape(10, 10)
    m_small, m_large = masks.threshold_masks([small, large], 0.6, masks.Granularity(), max_sparsity=0.8)
    assert int((m_small == 0).sum()) == 80  # capped
    assert int((m_large == 0).sum()) == 40  # takes the rest of the 120: still exact in total


def test_global_threshold_spans_weights_and_gives_exact_total():
    small = np.full((10, 10), 0.1, dtype="float32")
    large = np.arange(1, 101, dtype="float32").reshape(10, 10)
    m_small, m_large = (_np(m) for m in masks.threshold_masks([small, large], 0.6, masks.Granularity()))
    assert int((m_small == 0).sum()) == 99  # the small weights go first, but one is kept
    assert int((m_large == 0).sum()) == 21
    assert np.all(m_large.reshape(-1)[21:] == 1)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"m_by_n": (4, 2)}, "must be smaller"),
        ({"m_by_n": (4, 4)}, "must be smaller"),
        ({"m_by_n": (2,)}, "two positive integers"),
        ({"block_size": (0, 1)}, "block_size"),
        ({"block_size": (2, 2), "m_by_n": (2, 4)}, "cannot be combined"),
        ({"block_pooling_type": "MEDIAN"}, "block_pooling_type"),
    ],
)
def test_invalid_granularity_is_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        masks.Granularity(**kwargs)


def test_structured_granularity_on_a_1d_weight_names_the_weight():
    with pytest.raises(ValueError, match=r"dense/bias.*1-D"):
        masks.Granularity(m_by_n=(2, 4)).check_fits(WeightAxes.of_shape((8,)), (8,), "dense/bias")
    masks.Granularity().check_fits(WeightAxes.of_shape((8,)), (8,), "dense/bias")


# N:M in training: masks are set at step 1 (the first batch) and then held, whatever the schedule, as in tfmot.


def _dense_and_conv(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((4, 4, 8)), keras.layers.Conv2D(8, 3), keras.layers.Flatten(),
                             keras.layers.Dense(4)])


def _fit(pruned, batches, callbacks=()):
    pruned.compile(keras.optimizers.SGD(0.1), "mse")
    x, y = np.random.rand(4 * batches, 4, 4, 8), np.random.rand(4 * batches, 4)
    pruned.fit(x, y, batch_size=4, verbose=0, callbacks=[tfprune.UpdatePruningStep(), *callbacks])


def _masked_wrappers(pruned):
    return [w for w in tfprune.apply.wrapper.pruning_wrappers(pruned) if w.masks]  # Flatten is wrapped too, as in tfmot


def _zeroes_2_of_every_4_inputs(kernel):
    inputs_last = np.moveaxis(kernel, -2, -1)  # Dense (in, out) and Conv2D (h, w, in, out): groups along `in`
    return np.all((inputs_last.reshape(*inputs_last.shape[:-1], -1, 4) == 0).sum(axis=-1) == 2)


def test_m_by_n_with_the_default_schedule_prunes_at_the_first_batch():
    pruned = tfprune.prune_low_magnitude(_dense_and_conv(), sparsity_m_by_n=(2, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # neither the schedule warning nor a shortfall warning
        _fit(pruned, batches=1)
    kernels = [w.layer.kernel.numpy() for w in _masked_wrappers(pruned)]
    assert len(kernels) == 2 and all(_zeroes_2_of_every_4_inputs(k) for k in kernels)


def test_m_by_n_masks_update_at_step_1_only_whatever_the_schedule():
    with pytest.warns(UserWarning, match="N:M pruning zeroes"):
        pruned = tfprune.prune_low_magnitude(_dense_and_conv(), tfprune.ConstantSparsity(0.5, 0, frequency=1),
                                             sparsity_m_by_n=(2, 4))
    controller = tfprune.PruningController(pruned)
    assert [controller.update(step) for step in range(5)] == [False, True, False, False, False]


def test_rewinding_sees_the_m_by_n_update_at_step_1():
    model = _dense_and_conv()
    pruned = tfprune.prune_low_magnitude(model, sparsity_m_by_n=(2, 4))
    _fit(pruned, batches=1, callbacks=[tfprune.WeightRewinding(rewind_step=0, verbose=0)])
    for dense, wrapper in zip([model.layers[0], model.layers[2]], _masked_wrappers(pruned)):
        kernel = wrapper.layer.kernel.numpy()  # rewound after step 1 to the initial weights, masked
        np.testing.assert_array_equal(kernel, dense.kernel.numpy() * wrapper.masks[0].numpy())
        assert _zeroes_2_of_every_4_inputs(kernel)


@pytest.mark.parametrize("schedule", [tfprune.PolynomialDecay(0.0, 0.5, 0, 100), tfprune.ConstantSparsity(0.5, 10)])
def test_m_by_n_warns_once_naming_the_schedule_it_ignores(schedule):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tfprune.prune_low_magnitude(_dense_and_conv(), schedule, sparsity_m_by_n=(2, 4))
    messages = [str(w.message) for w in caught if "N:M pruning zeroes" in str(w.message)]
    assert len(messages) == 1 and repr(schedule) in messages[0] and "not used" in messages[0]
    assert caught[0].filename == __file__  # points at the prune_low_magnitude call


@pytest.mark.parametrize("schedule", [None, tfprune.ConstantSparsity(0.5, 0)])
def test_m_by_n_with_tfmots_default_schedule_does_not_warn(schedule):
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        tfprune.prune_low_magnitude(_dense_and_conv(), schedule, sparsity_m_by_n=(2, 4))
