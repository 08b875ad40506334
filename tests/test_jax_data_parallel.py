"""Magnitude pruning under JAX with `keras.distribution.DataParallel` over 2 CPU devices prunes the same weights as
on one device (tests/jax_data_parallel_job.py, each run in a process of its own).

The weights are not bit-identical: with the batch split in two, the gradient is the sum of two half-batch sums, in
another order than on one device, so the kernels drift apart by a few float32 ulps (about 1e-7). Masks could then
differ only where a mask update ranks two magnitudes within that distance of each other; the job measures the
smallest such distance at any update, and the masks are asserted identical because it is far larger than the drift.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.own_backend_processes

JOB = Path(__file__).parent / "jax_data_parallel_job.py"


def run_job(folder, devices, *args):
    out = folder / f"{devices}_devices.npz"
    env = {**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "3",
           "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    run = subprocess.run([sys.executable, str(JOB), str(out), *args], capture_output=True, text=True, env=env,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    arrays = dict(np.load(out))
    return json.loads(str(arrays.pop("summary"))), arrays


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("jax_data_parallel")
    return {"two": run_job(folder, 2, "data_parallel"), "one": run_job(folder, 1)}


def test_the_data_parallel_run_split_each_batch_over_two_devices(runs):
    two, one = runs["two"][0], runs["one"][0]
    assert (two["devices"], two["distribution"]) == (2, "DataParallel")
    assert (two["batch_devices"], two["batch_rows_per_device"]) == ([2], [16])  # batches of 32
    assert (one["devices"], one["distribution"], one["batch_devices"], one["batch_rows_per_device"]) == (
        1, "NoneType", [1], [32])


def test_masks_and_kernels_are_replicated_on_both_devices(runs):
    two = runs["two"][0]
    assert two["mask_devices"] == two["kernel_devices"] == [2]
    assert two["masks_and_kernels_replicated"]


@pytest.mark.parametrize("run", ["two", "one"])
def test_both_runs_reach_the_target_with_no_pruned_weight_alive(runs, run):
    summary = runs[run][0]
    assert summary["step"] == 30
    assert summary["sparsity"] == pytest.approx(0.75, abs=1e-6)
    assert summary["nonzero_under_mask"] == 0


def test_two_devices_prune_the_same_weights_as_one(runs):
    (two, two_arrays), (one, one_arrays) = runs["two"], runs["one"]
    assert sorted(two_arrays) == sorted(one_arrays) and len(two_arrays) == 2 * 3 * 3  # 3 weights, 3 epochs
    kernels = [name for name in two_arrays if "/kernel/" in name]
    drift = max(float(np.max(np.abs(two_arrays[name] - one_arrays[name]))) for name in kernels)
    assert 0 < drift < 1e-6  # reduction order: a few ulps apart, not identical
    assert two["mask_updates_ranked"] == one["mask_updates_ranked"] == 18  # 6 updates x 3 weights
    assert two["smallest_rank_gap"] > 10 * drift, "a near-tie at a mask update: masks may legitimately differ"
    for name in two_arrays:
        if "/mask/" in name:
            np.testing.assert_array_equal(two_arrays[name], one_arrays[name], err_msg=name)
