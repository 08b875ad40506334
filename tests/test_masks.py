import numpy as np
import pytest
from keras import ops

from tfprune import masks
from tfprune.axes import WeightAxes


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
