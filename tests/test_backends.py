"""`model.fit` of pruned models under JAX and PyTorch (tests/backend_fit_job.py, in a process of its own, whatever
backend runs the suite): layer and global scope and N:M reach their sparsity with no pruned weight alive under its
mask, channel pruning shrinks to the same outputs, Taylor importance prunes, a `.keras` saved there resumes its
schedule, and learning-rate rewinding replays the rate as it does under TensorFlow. (`make test` also runs the whole
suite under JAX.)"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.own_backend_processes

JOB = Path(__file__).parent / "backend_fit_job.py"
BACKENDS = ("jax", "torch")


@pytest.fixture(scope="module", params=BACKENDS)
def results(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(f"{request.param}_fit")
    run = subprocess.run([sys.executable, str(JOB), str(folder / "results.json"), str(folder), request.param],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads((folder / "results.json").read_text()) | {"asked": request.param}


def test_the_job_ran_on_the_backend_asked(results):
    assert results["backend"] == results["asked"]


@pytest.mark.parametrize("case, sparsity", [("layer", 0.8), ("global", 0.8), ("2:4", 0.5)])
def test_magnitude_pruning_reaches_its_sparsity_in_fit(results, case, sparsity):
    assert results[case] == {"sparsity": pytest.approx(sparsity, abs=0.01), "nonzero_under_mask": 0, "step": 20}


def test_channel_pruning_in_fit_shrinks_to_the_same_outputs(results):
    assert results["channels"]["hidden_units"] == 16
    assert results["channels"]["max_output_difference"] < 1e-5


def test_a_model_saved_there_resumes_its_schedule(results):
    assert results["resumed"] == {"step_loaded": 20, "sparsity": pytest.approx(0.8, abs=0.01),
                                  "nonzero_under_mask": 0, "step": 40}


def test_weight_rewinding_and_summaries_in_fit(results):
    assert results["weight_rewinding"] == {"kernel_is_initial_times_mask": True,
                                           "sparsity": pytest.approx(0.8, abs=0.01), "summaries_written": 1}


def test_taylor_importance_prunes_the_unit_the_loss_does_not_read(results):
    assert results["taylor"] == {"pruned_hidden_units": [3]}  # magnitude would keep it: its weights are the largest


def test_a_keras_hub_backbone_is_pruned_in_fit(results):
    assert results["keras_hub_bert"] == {"sparsity": pytest.approx(0.8, abs=0.01), "nonzero_under_mask": 0}


def test_learning_rate_rewinding_ends_where_it_does_under_tensorflow(tmp_path):
    job = Path(__file__).parent / "lr_rewinding_job.py"
    weights = {}
    for backend in ("tensorflow", *BACKENDS):
        run = subprocess.run([sys.executable, str(job), str(tmp_path / f"{backend}.npz")], capture_output=True,
                             text=True, timeout=600, env={**os.environ, "KERAS_BACKEND": backend})
        assert run.returncode == 0, run.stderr[-3000:]
        with np.load(tmp_path / f"{backend}.npz") as arrays:
            assert str(arrays["backend"]) == backend
            weights[backend] = [arrays[name] for name in arrays.files if name != "backend"]
    for backend in BACKENDS:
        assert len(weights[backend]) == len(weights["tensorflow"])
        for on_tensorflow, on_other in zip(weights["tensorflow"], weights[backend]):
            np.testing.assert_allclose(on_other, on_tensorflow, atol=1e-5)  # without the replay on JAX: 0.1 apart
