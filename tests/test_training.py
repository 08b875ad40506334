"""Integration: real fits on the digits data, save/load mid-pruning, custom loops, TensorBoard, distribution."""

import os
import subprocess
import sys
import textwrap
import warnings
import zipfile

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfprune
from tests.conftest import accuracy, compile_classifier, mlp

BATCH = 32


@pytest.fixture(scope="module")
def trained_dense(digits):
    (x, y), _ = digits
    model = compile_classifier(mlp())
    model.fit(x, y, epochs=20, batch_size=BATCH, verbose=0)
    return model


def _steps_per_epoch(x):
    return int(np.ceil(len(x) / BATCH))


def _prune_and_finetune(model, digits, scope, epochs=8):
    (x, y), _ = digits
    schedule = tfprune.PolynomialDecay.from_epochs(
        0.0, 0.8, steps_per_epoch=_steps_per_epoch(x), begin_epoch=0, end_epoch=epochs - 3, frequency=10
    )
    pruned = compile_classifier(tfprune.prune_low_magnitude(model, schedule, scope=scope))
    pruned.fit(x, y, epochs=epochs, batch_size=BATCH, verbose=0, callbacks=[tfprune.UpdatePruningStep()])
    return pruned


def test_layer_scope_reaches_target_in_every_layer_and_keeps_accuracy(trained_dense, digits):
    _, (x_test, y_test) = digits
    pruned = _prune_and_finetune(trained_dense, digits, "layer")
    report = tfprune.sparsity_report(pruned)
    for row in report["layers"]:
        assert row["params"] - row["nonzeros"] == round(0.8 * row["params"]), row
    dense_acc, pruned_acc = accuracy(trained_dense, x_test, y_test), accuracy(pruned, x_test, y_test)
    assert dense_acc > 0.9
    assert pruned_acc >= dense_acc - 0.03, (dense_acc, pruned_acc)
    stripped = tfprune.strip_pruning(pruned)
    np.testing.assert_allclose(stripped.predict(x_test, verbose=0), pruned.predict(x_test, verbose=0), atol=1e-5)


def test_global_scope_hits_total_target_with_uneven_layers(trained_dense, digits):
    pruned = _prune_and_finetune(trained_dense, digits, "global")
    report = tfprune.sparsity_report(pruned)
    total = report["total"]
    assert total["params"] - total["nonzeros"] == round(0.8 * total["params"])
    sparsities = [row["sparsity"] for row in report["layers"]]
    assert max(sparsities) - min(sparsities) > 0.05, sparsities


def test_pruned_weights_stay_zero_between_updates_and_keep_their_own_constraint(digits):
    (x, y), _ = digits
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(32, activation="relu",
                              kernel_constraint=keras.constraints.MaxNorm(0.3)), keras.layers.Dense(10)])
    schedule = tfprune.ConstantSparsity(0.7, begin_step=1, frequency=10**6)  # one mask update, at the first batch
    pruned = compile_classifier(tfprune.prune_low_magnitude(model, schedule), learning_rate=1e-2)
    pruned.fit(x, y, epochs=2, batch_size=BATCH, verbose=0, callbacks=[tfprune.UpdatePruningStep()])
    for wrapper in tfprune.PruningController(pruned).wrappers:
        kernel, mask = wrapper.pruned_weights[0].numpy(), wrapper.masks[0].numpy()
        assert np.count_nonzero(mask == 0) == round(0.7 * mask.size)
        assert np.all(kernel[mask == 0] == 0)  # Adam's momentum did not move pruned weights
    first_kernel = pruned.layers[0].pruned_weights[0].numpy()
    assert np.linalg.norm(first_kernel, axis=0).max() <= 0.3 + 1e-5  # MaxNorm still applies


def test_pruned_weights_stay_zero_when_the_optimizer_swaps_in_averaged_weights(digits):
    (x, y), _ = digits
    pruned = tfprune.prune_low_magnitude(mlp(), tfprune.PolynomialDecay(0.0, 0.8, 0, 60, frequency=10))
    pruned.compile(keras.optimizers.Adam(1e-3, use_ema=True), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    pruned.fit(x, y, epochs=2, batch_size=BATCH, verbose=0, callbacks=[tfprune.UpdatePruningStep()])
    for wrapper in tfprune.PruningController(pruned).wrappers:
        assert np.all(wrapper.pruned_weights[0].numpy()[wrapper.masks[0].numpy() == 0] == 0)


def test_fit_without_update_callback_raises_with_the_fix(digits):
    (x, y), _ = digits
    pruned = compile_classifier(tfprune.prune_low_magnitude(mlp()))
    with pytest.raises(RuntimeError, match=r"callbacks=\[tfprune.UpdatePruningStep\(\)\]") as raised:
        pruned.fit(x, y, epochs=1, verbose=0)
    if keras.backend.backend() == "jax":  # Keras' JAX fit emptied the variables and keeps them so after an error
        assert "prune the original model again" in str(raised.value)
        pruned = compile_classifier(tfprune.prune_low_magnitude(mlp()))
    pruned.fit(x, y, epochs=1, verbose=0, callbacks=[tfprune.UpdatePruningStep()])  # then it works
    with pytest.raises(RuntimeError, match="UpdatePruningStep"):
        pruned.fit(x, y, epochs=1, verbose=0)  # and a later fit without it is caught too


def test_fit_ending_before_schedule_end_warns(digits):
    (x, y), _ = digits
    schedule = tfprune.PolynomialDecay(0.0, 0.8, begin_step=0, end_step=10_000, frequency=10)
    pruned = compile_classifier(tfprune.prune_low_magnitude(mlp(), schedule))
    with pytest.warns(UserWarning, match=r"runs 4 mask update\(s\), the last at step 40, and reaches sparsity "
                                         r"0.00956 instead of 0.8. Train until step 10000"):
        pruned.fit(x, y, epochs=1, batch_size=BATCH, verbose=0, callbacks=[tfprune.UpdatePruningStep()])


def test_tfmot_end_step_recipe_reaches_final_sparsity_without_a_warning(digits):
    (x, y), _ = digits
    x, y = x[: 10 * BATCH], y[: 10 * BATCH]  # exactly 10 batches
    schedule = tfprune.PolynomialDecay(0.0, 0.8, begin_step=0, end_step=10, frequency=5)
    pruned = compile_classifier(tfprune.prune_low_magnitude(mlp(), schedule))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pruned.fit(x, y, epochs=1, batch_size=BATCH, verbose=0, callbacks=[tfprune.UpdatePruningStep()])
    assert tfprune.sparsity_report(pruned)["total"]["sparsity"] == pytest.approx(0.8, abs=1e-3)
    assert tfprune.PruningController(pruned).step == 10


def test_frequency_longer_than_the_run_is_explained(digits):
    (x, y), _ = digits
    x, y = x[: 7 * BATCH], y[: 7 * BATCH]
    schedule = tfprune.PolynomialDecay(0.5, 0.8, begin_step=0, end_step=7)  # tfmot's default frequency=100
    pruned = compile_classifier(tfprune.prune_low_magnitude(mlp(), schedule))
    with pytest.warns(UserWarning, match=r"runs no mask update at all.*`frequency`=100 exceeds the 7 steps"):
        pruned.fit(x, y, epochs=1, batch_size=BATCH, verbose=0, callbacks=[tfprune.UpdatePruningStep()])
    assert tfprune.sparsity_report(pruned)["total"]["sparsity"] == 0.0


def test_keras_round_trip_mid_pruning_resumes_masks_and_schedule(digits, tmp_path):
    (x, y), _ = digits
    steps = _steps_per_epoch(x)
    schedule = tfprune.PolynomialDecay(0.0, 0.8, begin_step=0, end_step=4 * steps, frequency=steps)
    pruned = compile_classifier(tfprune.prune_low_magnitude(mlp(), schedule))
    with pytest.warns(UserWarning, match="instead of 0.8"):  # stopping half way, on purpose
        pruned.fit(x, y, epochs=2, batch_size=BATCH, verbose=0, callbacks=[tfprune.UpdatePruningStep()])
    mid = tfprune.sparsity_report(pruned)["total"]["sparsity"]
    assert 0.3 < mid < 0.8
    path = tmp_path / "mid.keras"
    pruned.save(path)

    loaded = tfprune.load_model(path)
    assert tfprune.PruningController(loaded).step == 2 * steps
    assert tfprune.sparsity_report(loaded)["total"]["sparsity"] == pytest.approx(mid)
    for a, b in zip(tfprune.PruningController(pruned).wrappers, tfprune.PruningController(loaded).wrappers):
        np.testing.assert_array_equal(a.masks[0].numpy(), b.masks[0].numpy())
        assert b.pruning_schedule.get_config() == schedule.get_config()
    np.testing.assert_allclose(loaded.predict(x[:16], verbose=0), pruned.predict(x[:16], verbose=0), atol=1e-6)

    old_masks = [w.masks[0].numpy() for w in tfprune.PruningController(loaded).wrappers]
    loaded.fit(x, y, epochs=2, batch_size=BATCH, verbose=0, callbacks=[tfprune.UpdatePruningStep()])
    assert tfprune.PruningController(loaded).step == 4 * steps
    assert tfprune.sparsity_report(loaded)["total"]["sparsity"] == pytest.approx(0.8, abs=1e-4)
    for old, wrapper in zip(old_masks, tfprune.PruningController(loaded).wrappers):
        assert not np.any(wrapper.masks[0].numpy()[old == 0])  # pruned weights never came back


def test_loading_a_truncated_or_corrupt_keras_file_is_a_clear_error(tmp_path):
    model = tfprune.prune_low_magnitude(mlp())
    good = tmp_path / "good.keras"
    model.save(good)
    truncated = tmp_path / "truncated.keras"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ValueError, match="truncated.keras.*corrupt or truncated"):
        tfprune.load_model(truncated)
    garbage = tmp_path / "garbage.keras"
    garbage.write_bytes(b"not a model at all")
    with pytest.raises(ValueError, match="corrupt or truncated"):
        tfprune.load_model(garbage)
    broken_config = tmp_path / "broken_config.keras"  # a sound zip whose config.json is cut off
    with zipfile.ZipFile(good) as source, zipfile.ZipFile(broken_config, "w") as target:
        for item in source.infolist():
            content = source.read(item)
            target.writestr(item, content[: len(content) // 2] if item.filename == "config.json" else content)
    with pytest.raises(ValueError, match="broken_config.keras.*not valid JSON.*corrupt: re-save"):
        tfprune.load_model(broken_config)
    with pytest.raises(FileNotFoundError, match="No model file"):
        tfprune.load_model(tmp_path / "missing.keras")


@pytest.mark.tensorflow_only("a tf.function train step (under JAX: tests/jax_training_loop.py)")
def test_custom_training_loop_with_the_callback_driven_by_hand(digits):
    (x, y), _ = digits
    model = tfprune.prune_low_magnitude(mlp(), tfprune.PolynomialDecay(0.0, 0.6, 0, 40, frequency=4))
    optimizer = keras.optimizers.Adam(1e-3)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    step_callback = tfprune.UpdatePruningStep()
    step_callback.set_model(model)

    @tf.function
    def train_step(xb, yb):
        with tf.GradientTape() as tape:
            loss = loss_fn(yb, model(xb, training=True))
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
        return loss

    step_callback.on_train_begin()
    for batch in range(50):
        step_callback.on_train_batch_begin(batch)
        i = (batch * BATCH) % (len(x) - BATCH)
        train_step(x[i : i + BATCH], y[i : i + BATCH])
        step_callback.on_train_batch_end(batch)
    step_callback.on_train_end()
    assert tfprune.sparsity_report(model)["total"]["sparsity"] == pytest.approx(0.6, abs=1e-3)
    assert tfprune.PruningController(model).step == 50
    for wrapper in tfprune.PruningController(model).wrappers:  # the optimizer kept pruned weights at zero
        assert np.all(wrapper.pruned_weights[0].numpy()[wrapper.masks[0].numpy() == 0] == 0)


def test_pruning_summaries_write_real_tensorboard_scalars(digits, tmp_path):
    (x, y), _ = digits
    pruned = compile_classifier(tfprune.prune_low_magnitude(mlp(), tfprune.ConstantSparsity(0.5, 0, frequency=1)))
    callbacks = [tfprune.UpdatePruningStep(), tfprune.PruningSummaries(tmp_path)]
    pruned.fit(x, y, epochs=2, batch_size=BATCH, verbose=0, callbacks=callbacks)
    event_files = list((tmp_path / "pruning").glob("events.out.tfevents.*"))
    assert event_files
    scalars = {}
    for event in tf.compat.v1.train.summary_iterator(str(event_files[0])):
        for value in event.summary.value:
            scalars.setdefault(value.tag, []).append(float(tf.make_ndarray(value.tensor)))
    # at the start of each epoch (as tfmot) and at the end of training
    assert scalars["sparsity/total"] == [0.0, pytest.approx(0.5), pytest.approx(0.5)]
    assert scalars["sparsity/nonzero_under_mask"] == [0.0, 0.0, 0.0]
    layer_tags = [tag for tag in scalars if tag.endswith("/kernel")]
    assert len(layer_tags) == 3 and all(scalars[tag] == [0.0, 0.5, 0.5] for tag in layer_tags)


def test_pruning_summaries_reject_bad_update_freq():
    with pytest.raises(ValueError, match="update_freq"):
        tfprune.PruningSummaries("logs", update_freq=0)


MIRRORED_SCRIPT = textwrap.dedent(
    """
    import numpy as np, tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras, tfprune
    from tfprune.data import load_digits
    (x, y), _ = load_digits()
    x = x.reshape(-1, 64)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(10)])
        pruned = tfprune.prune_low_magnitude(model, tfprune.PolynomialDecay(0.0, 0.7, 0, 40, frequency=5))
        pruned.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    pruned.fit(x, y, epochs=2, batch_size=32, verbose=0, callbacks=[tfprune.UpdatePruningStep()])
    for wrapper in tfprune.PruningController(pruned).wrappers:
        for mask in wrapper.masks:
            replicas = [v.numpy() for v in strategy.experimental_local_results(mask.value)]
            assert len(replicas) == 2, replicas
            assert all(np.array_equal(replicas[0], r) for r in replicas), "replicas disagree"
            assert abs((replicas[0] == 0).mean() - 0.7) < 1e-3, (replicas[0] == 0).mean()
        for weight, mask in zip(wrapper.pruned_weights, wrapper.masks):
            for value in strategy.experimental_local_results(weight.value):  # zeros kept on each replica
                assert np.all(value.numpy()[mask.numpy() == 0] == 0), "pruned weights moved"
    print("MIRRORED_OK", strategy.num_replicas_in_sync)
    """
)


@pytest.mark.tensorflow_only("tf.distribute.MirroredStrategy (under JAX: tests/test_jax_data_parallel.py)")
def test_mirrored_strategy_gives_identical_masks_on_every_replica():
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, "-c", MIRRORED_SCRIPT], capture_output=True, text=True, env=env, timeout=300)
    assert "MIRRORED_OK 2" in result.stdout, result.stdout + result.stderr[-3000:]
