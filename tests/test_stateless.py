"""Stateless training loops: a jitted JAX loop keeps pruned weights at zero with `apply_masks`, and the
sparsity report counts the weights that grow back without it."""

import json
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

import tfprune
from tests.conftest import mlp

LOOP = Path(__file__).parent / "jax_training_loop.py"


def _run_jax_loop(*flags):
    result = subprocess.run([sys.executable, str(LOOP), *flags], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1]), result.stderr


@pytest.mark.own_backend_processes
def test_the_readme_jax_loop_keeps_pruned_weights_at_zero_and_the_report_catches_them_without_apply_masks():
    masked, _ = _run_jax_loop()
    assert masked == {"sparsity": pytest.approx(0.8, abs=0.01), "nonzero_under_mask": 0}
    unmasked, stderr = _run_jax_loop("--no-masks")
    assert unmasked["nonzero_under_mask"] > 1000  # the jitted step used the masks it was traced with
    assert "tfprune.apply_masks()" in stderr


def test_apply_masks_zeroes_what_the_given_masks_prune_and_nothing_else():
    model = tfprune.prune_low_magnitude(mlp(hidden=(16,)), tfprune.ConstantSparsity(0.5, 0))
    trainable = [np.ones(v.shape, "float32") for v in model.trainable_variables]
    masks = [np.random.default_rng(i).integers(0, 2, v.shape).astype(v.dtype) if "mask" in v.name else v.numpy()
             for i, v in enumerate(model.non_trainable_variables)]
    masked = [keras.ops.convert_to_numpy(v) for v in tfprune.apply_masks(model, trainable, masks)]
    mask_of = {id(w): m for wrapper in tfprune.PruningController(model).wrappers
               for w, m in zip(wrapper.pruned_weights, wrapper.masks)}
    given = {id(v): value for v, value in zip(model.non_trainable_variables, masks)}
    for variable, value in zip(model.trainable_variables, masked):
        expected = given[id(mask_of[id(variable)])] if id(variable) in mask_of else 1.0  # biases untouched
        np.testing.assert_array_equal(value, np.ones(variable.shape) * expected)
