"""Pruning under MultiWorkerMirroredStrategy: two local worker processes (tests/multi_worker_job.py).

Each worker runs the pruning callback itself; both must end with the same masks, and the chief's
`.keras` checkpoint must resume its schedule on one machine.
"""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import tfprune
from multi_worker_job import GLOBAL_BATCH, SCHEDULE, STEPS_PER_EPOCH, training_data

JOB = Path(__file__).parent / "multi_worker_job.py"
TIMEOUT_SECONDS = 300  # a hung collective (a worker waiting for one that died) fails the test instead
FINAL_STEP = 2 * STEPS_PER_EPOCH


def free_ports(count):
    """`count` distinct ports on 127.0.0.1 that nothing listens on right now."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def tail(path, lines=25):
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def run_two_workers(out_dir):
    """Starts both workers, waits for both (killing both once one fails or time runs out); returns their exit codes."""
    ports = free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    workers = []
    for index in range(2):
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2",
               "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
        with open(out_dir / f"worker{index}.out", "w") as out, open(out_dir / f"worker{index}.err", "w") as err:
            workers.append(subprocess.Popen([sys.executable, str(JOB), str(out_dir)], stdout=out, stderr=err, env=env))
    deadline = time.monotonic() + TIMEOUT_SECONDS
    try:
        while True:
            exit_codes = [w.poll() for w in workers]
            if None not in exit_codes or any(exit_codes) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
                w.wait()
    return [w.returncode for w in workers]


pytestmark = pytest.mark.tensorflow_only("tf.distribute.MultiWorkerMirroredStrategy")


@pytest.fixture(scope="module")
def cluster_run(tmp_path_factory):
    """The output folder of one two-worker run that both workers finished."""
    out_dir = tmp_path_factory.mktemp("multi_worker")
    started = time.monotonic()
    exit_codes = run_two_workers(out_dir)
    seconds = time.monotonic() - started
    logs = "\n".join(f"--- worker {i} (exit code {code}) stderr tail:\n{tail(out_dir / f'worker{i}.err')}"
                     for i, code in enumerate(exit_codes))
    assert exit_codes == [0, 0], f"after {seconds:.0f} s (timeout {TIMEOUT_SECONDS} s):\n{logs}"
    for i in range(2):
        assert f"WORKER_DONE {i} 2" in (out_dir / f"worker{i}.out").read_text(), logs
    return out_dir


def load_state(out_dir, worker, step):
    with np.load(out_dir / f"worker{worker}_step{step}.npz") as arrays:
        return {name: arrays[name] for name in arrays.files}


def kernel_sparsities(masks):
    return {name: float((mask == 0).mean()) for name, mask in masks.items()
            if name.startswith("mask:") and "kernel" in name}


@pytest.mark.parametrize("step", [STEPS_PER_EPOCH, FINAL_STEP])
def test_both_workers_hold_identical_masks_at_the_schedule_sparsity(cluster_run, step):
    chief, other = load_state(cluster_run, 0, step), load_state(cluster_run, 1, step)
    assert chief.keys() == other.keys()
    assert int(chief["step"]) == int(other["step"]) == step
    for name in chief:
        assert np.array_equal(chief[name], other[name]), f"{name} differs between the workers at step {step}"
    sparsities = kernel_sparsities(chief)
    assert len(sparsities) == 2, sparsities  # both Dense kernels
    for name, sparsity in sparsities.items():
        assert sparsity == pytest.approx(SCHEDULE.sparsity_at(step), abs=1e-3), name
    if step == FINAL_STEP:
        assert all(s == pytest.approx(0.75, abs=1e-3) for s in sparsities.values()), sparsities


def test_chief_checkpoint_resumes_the_schedule(cluster_run):
    """Only the chief's file is left; loaded on one machine, it holds step 8 and its masks; fit goes on to step 16."""
    assert sorted(p.name for p in cluster_run.iterdir() if p.suffix == ".keras" or p.is_dir()) == ["checkpoint.keras"]
    model = tfprune.load_model(cluster_run / "checkpoint.keras")
    controller = tfprune.PruningController(model)
    assert controller.step == STEPS_PER_EPOCH
    saved = load_state(cluster_run, 0, STEPS_PER_EPOCH)
    for wrapper in controller.wrappers:
        for mask in wrapper.masks:
            assert np.array_equal(mask.numpy(), saved[f"mask:{mask.path}"]), mask.path
    x, y = training_data()
    model.fit(x, y, batch_size=GLOBAL_BATCH, epochs=1, shuffle=False, verbose=0,
              callbacks=[tfprune.UpdatePruningStep()])
    assert controller.step == FINAL_STEP
    for wrapper in controller.wrappers:
        for weight, mask in zip(wrapper.pruned_weights, wrapper.masks):
            if "kernel" in weight.path:
                assert float((mask.numpy() == 0).mean()) == pytest.approx(0.75, abs=1e-3), mask.path
            assert np.all(weight.numpy()[mask.numpy() == 0] == 0), weight.path
