"""IterativePruning: rounds, modes, controls, checkpoints (with a real killed run) and bad input."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import keras
import numpy as np
import pytest

import tfprune
from tests.conftest import mlp, prepare_tiny_tfds_dataset
from tfprune.iterative import IterativePruning
from tfprune.rewinding import rewound_variables

EPOCHS, BATCH = 2, 64


@pytest.fixture(scope="module")
def data(digits):
    (x, y), (x_test, y_test) = digits
    return (x[:640], y[:640]), (x_test[:200], y_test[:200])


def schedule():
    return keras.optimizers.schedules.ExponentialDecay(5e-3, decay_steps=10, decay_rate=0.5)


def compile_kwargs(learning_rate=None):
    return dict(optimizer=keras.optimizers.Adam(learning_rate or schedule()),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])


class RoundStarts(keras.callbacks.Callback):
    """Records the weights, masks and learning rate each round starts training from."""

    def __init__(self):
        super().__init__()
        self.weights, self.masks, self.learning_rates = [], [], []

    def on_train_begin(self, logs=None):
        self.weights.append([v.numpy() for v in rewound_variables(self.model)])
        self.masks.append([m.numpy() for w in tfprune.apply.wrapper.pruning_wrappers(self.model) for m in w.masks])
        self.learning_rates.append(float(self.model.optimizer.learning_rate))


def driver(data, model=None, directory=None, rounds=1, **kwargs):
    train, test = data
    model = model or mlp(hidden=(32,))
    kwargs.setdefault("compile_kwargs", compile_kwargs())
    fit_kwargs = dict(epochs=EPOCHS, batch_size=BATCH, callbacks=kwargs.pop("callbacks", []))
    return IterativePruning(model, train_data=train, rounds=rounds, test_data=test, validation_data=test,
                            fit_kwargs=fit_kwargs, directory=directory, verbose=0, **kwargs)


def pruned_kernel_values(values, masks):
    kernels = iter(masks)
    return [v * next(kernels) if v.ndim == 2 else v for v in values]


def test_weight_mode_rewinds_survivors_to_step_k_and_replays_the_learning_rate_from_it(data):
    starts = RoundStarts()
    run = driver(data, mode="weights", rewind_step=3, callbacks=[starts])
    rows = run.run()
    assert [r["round"] for r in rows] == [0, 1]
    for now, expected in zip(starts.weights[1], pruned_kernel_values(run.snapshot.values, starts.masks[1])):
        np.testing.assert_array_equal(now, expected)
    assert run.snapshot.step == 3
    np.testing.assert_allclose(starts.learning_rates[1], float(schedule()(3)), rtol=1e-6)
    assert rows[1]["weights_remaining"] == pytest.approx(80, abs=0.2)
    assert rows[1]["min_val_loss_step"] in (10, 20)  # the end of epoch 1 or 2 of a round of 2 x 10 steps


def test_lr_mode_keeps_the_trained_weights_and_finetune_trains_at_the_final_rate(data):
    ends = []
    record_end = keras.callbacks.LambdaCallback(
        on_train_end=lambda logs: ends.append([v.numpy() for v in rewound_variables(run.model)]))
    starts = RoundStarts()
    run = driver(data, mode="lr", rewind_step=3, callbacks=[starts, record_end])
    run.run()
    for now, trained in zip(starts.weights[1], pruned_kernel_values(ends[0], starts.masks[1])):
        np.testing.assert_array_equal(now, trained)
    np.testing.assert_allclose(starts.learning_rates[1], float(schedule()(3)), rtol=1e-6)

    starts = RoundStarts()
    run = driver(data, mode="finetune", callbacks=[starts])
    rows = run.run()
    final_rate = float(schedule()(rows[0]["steps"]))
    assert starts.learning_rates[1] == pytest.approx(final_rate, rel=1e-6)
    assert starts.learning_rates[1] < starts.learning_rates[0]


def test_rates_per_layer_and_global_ranking(data):
    model = mlp(hidden=(48, 32))
    output = model.layers[-1].name
    rows = driver(data, model=model, rounds=2, rate=0.2, layer_rates={output: 0.1}).run()
    layers = rows[-1]["layer_sparsity"]
    assert layers[output] == pytest.approx(1 - 0.9**2, abs=0.01)
    assert all(s == pytest.approx(1 - 0.8**2, abs=0.01) for name, s in layers.items() if name != output)

    global_rows = driver(data, model=mlp(hidden=(48, 32)), rounds=2, rate=0.5, scope="global").run()
    assert global_rows[-1]["weights_remaining"] == pytest.approx(25, abs=0.1)
    assert len(set(global_rows[-1]["layer_sparsity"].values())) > 1  # one ranking, different layers' shares


def test_controls_random_mask_and_random_reinitialisation(data):
    magnitude, random_mask = RoundStarts(), RoundStarts()
    driver(data, mode="weights", callbacks=[magnitude]).run()
    driver(data, mode="weights", control="random_mask", callbacks=[random_mask]).run()
    for winning, random in zip(magnitude.masks[1], random_mask.masks[1]):
        assert winning.sum() == random.sum()  # the same per-layer sparsity
        assert np.mean(winning == random) < 0.9
    reinit = RoundStarts()
    run = driver(data, mode="weights", control="reinit", callbacks=[reinit])
    run.run()
    first_kernel, initial_kernel = reinit.weights[1][0], reinit.weights[0][0]
    assert not np.allclose(first_kernel, initial_kernel * reinit.masks[1][0])  # new random values ...
    assert np.all(first_kernel[reinit.masks[1][0] == 0] == 0)  # ... on the winning mask
    assert np.std(first_kernel[reinit.masks[1][0] != 0]) == pytest.approx(np.std(initial_kernel), rel=0.2)


def test_random_mask_without_rewinding_keeps_the_values_of_its_survivors(data):
    starts = RoundStarts()
    driver(data, mode="lr", control="random_mask", callbacks=[starts]).run()
    kernels = [starts.weights[1][0], starts.weights[1][2]]  # [kernel, bias, kernel, bias] of mlp(hidden=(32,))
    for kernel, mask in zip(kernels, starts.masks[1]):
        assert 0.7 < mask.mean() < 0.9
        assert np.count_nonzero(kernel) == np.count_nonzero(mask)  # none of the kept weights was zeroed


def test_tf_data_input_and_results_file_and_plot(data, tmp_path):
    import tensorflow as tf

    (x, y), test = data
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH)
    run = IterativePruning(mlp(hidden=(32,)), compile_kwargs(), dataset, rounds=1, test_data=test,
                           fit_kwargs=dict(epochs=1), directory=str(tmp_path), verbose=0)
    rows = run.run()
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["rows"] == json.loads(json.dumps(rows))
    assert saved["settings"]["mode"] == "weights"
    assert (tmp_path / "accuracy.png").stat().st_size > 10_000
    assert rows[0]["test_accuracy"] > 0.25  # it learned something: chance is 0.1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["accuracy.png", "results.json", "round-001"]


def test_tensorflow_datasets_input(tmp_path):
    import tensorflow as tf
    import tensorflow_datasets as tfds

    name = prepare_tiny_tfds_dataset(tmp_path / "tfds")  # built here from a generator: no download
    train, test = (tfds.load(name, split=split, as_supervised=True, data_dir=str(tmp_path / "tfds"))
                   .map(lambda image, label: (tf.reshape(image, (64,)), label)).batch(16)
                   for split in ("train", "test"))
    rows = IterativePruning(mlp(hidden=(16,)), compile_kwargs(), train, rounds=1, test_data=test,
                            fit_kwargs=dict(epochs=1), verbose=0).run()
    assert [r["weights_remaining"] for r in rows] == [100.0, pytest.approx(80, abs=0.3)]
    assert rows[1]["steps"] == 4  # 60 examples in batches of 16


def test_progress_line_per_round(data, capsys):
    run = driver(data, rounds=1)
    run.verbose = 1
    run.run()
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("round ")]
    assert len(lines) == 2
    assert "80.0% of weights remain" in lines[1] and "test accuracy" in lines[1]


def test_same_seed_same_results_and_resume_with_other_settings_is_an_error(data, tmp_path):
    first = driver(data, directory=str(tmp_path / "a"), seed=3).run()
    second = driver(data, seed=3).run()
    assert [r["test_accuracy"] for r in first] == [r["test_accuracy"] for r in second]
    with pytest.raises(ValueError, match=r"other settings.*mode: checkpoint 'weights', now 'lr'"):
        driver(data, directory=str(tmp_path / "a"), seed=3, mode="lr").run()
    changed_rate = r"other settings.*optimizer.config.learning_rate: checkpoint \{.*ExponentialDecay.*now 0.0099"
    with pytest.raises(ValueError, match=changed_rate):
        driver(data, directory=str(tmp_path / "a"), seed=3, compile_kwargs=compile_kwargs(0.01)).run()


RUN_SCRIPT = textwrap.dedent("""
    import os, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    sys.path.insert(0, {tests!r})
    import keras
    from conftest import mlp
    from tfprune import data, IterativePruning

    (x, y), (x_test, y_test) = data.load_digits()
    x, x_test = x.reshape(-1, 64)[:640], x_test.reshape(-1, 64)[:200]
    run = IterativePruning(
        mlp(hidden=(32,), seed=1),
        dict(optimizer=keras.optimizers.Adam(1e-3), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
             metrics=["accuracy"]),
        (x, y[:640]), rounds=3, test_data=(x_test, y_test[:200]), fit_kwargs=dict(epochs=2, batch_size=32),
        directory=sys.argv[1], seed=0)
    run.run()
""")


def test_a_killed_run_resumes_at_the_last_finished_round_with_the_same_results(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(RUN_SCRIPT.format(tests=os.path.dirname(__file__)))
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    reference = tmp_path / "reference"
    subprocess.run([sys.executable, str(script), str(reference)], check=True, env=env, capture_output=True)

    killed = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, str(script), str(killed)], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
    deadline = time.monotonic() + 300
    while not (killed / "results.json").exists() or len(json.loads((killed / "results.json").read_text())["rows"]) < 2:
        assert process.poll() is None and time.monotonic() < deadline, "the run ended before it could be killed"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)  # in the middle of round 2
    process.wait()
    done_before = len(json.loads((killed / "results.json").read_text())["rows"])
    assert done_before < 4

    resumed = subprocess.run([sys.executable, str(script), str(killed)], check=True, env=env, capture_output=True,
                             text=True)
    assert f"Resuming from '{killed}': {done_before} round(s) done." in resumed.stdout
    rounds_run = [int(line.split()[1].split("/")[0]) for line in resumed.stdout.splitlines()
                  if line.startswith("round ")]
    assert rounds_run == list(range(done_before, 4))  # no finished round done twice

    def table(directory):
        return [{k: v for k, v in row.items() if k != "seconds"}
                for row in json.loads((directory / "results.json").read_text())["rows"]]

    assert table(killed) == table(reference)


@pytest.mark.parametrize(
    "kwargs, message",
    [({"rate": 0.0}, r"`rate` must be a fraction .* in \(0, 1\)"), ({"rate": 1.2}, "in \\(0, 1\\)"),
     ({"rounds": 0}, "`rounds` must be an integer >= 1"), ({"mode": "rewind"}, "`mode` must be one of"),
     ({"control": "shuffle"}, "`control` must be one of"), ({"mode": "lr", "control": "reinit"}, "needs mode='weights'"),
     ({"layer_rates": {"nope": 0.1}}, "names layers that are not pruned"), ({"layer_rates": {"x": 2}}, "in \\(0, 1\\)"),
     ({"scope": "model"}, "`scope` must be one of"), ({"rewind_step": -2}, "`rewind_step` must be an integer"),
     ({"compile_kwargs": {"optimizer": object(), "loss": "mse"}}, "needs a Keras optimizer with an `iterations`"),
     ({"compile_kwargs": {"loss": "mse"}}, "needs an `optimizer`")],
)
def test_bad_settings(data, kwargs, message):
    with pytest.raises(ValueError, match=message):
        driver(data, **kwargs)


def test_rewind_step_beyond_a_round_and_other_granularity_are_errors(data):
    with pytest.raises(ValueError, match="rewind_step=10000 is beyond this run"):
        driver(data, rewind_step=10_000).run()
    blocks = tfprune.prune_low_magnitude(mlp(hidden=(32,)), block_size=(1, 2))
    with pytest.raises(ValueError, match=r"already pruned with blocks \(1, 2\)"):
        driver(data, model=blocks)
    channels = tfprune.prune_channels(mlp(hidden=(32,)), tfprune.ConstantSparsity(0.5))
    with pytest.raises(ValueError, match="channel-pruned"):
        driver(data, model=channels)
