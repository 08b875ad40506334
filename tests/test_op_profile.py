"""Where the time goes: operators cut out of real INT8 .tflite files, measured with LiteRT (and qemu).

Timings are noisy here, so what is asserted is what must hold whatever the noise: the cut models
compute what the whole model computes, every operator is accounted for under its Keras layer, a
layer with half its channels costs clearly less, and instruction counts (exact) sum to the whole.
The files are .tflite, whatever the Keras backend: these tests run once, in the TensorFlow pass.
"""

import json
import subprocess
import sys

import keras
import numpy as np
import pytest

from tfprune.deploy.aarch64 import find_sysroot
from tfprune.deploy.devices import LocalLiteRT, QemuInstructions
from tfprune.deploy.export import export_tflite
from tfprune.deploy.litert import LiteRTModel
from tfprune.deploy.op_profile import _pack, _prefix, _read, format_profiles, profile_tflite

L = keras.layers
pytestmark = pytest.mark.own_backend_processes


def cnn(width):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((24, 24, 3))
    x = L.Conv2D(16, 3, padding="same", name="stem")(inputs)
    x = L.ReLU(name="stem_relu")(L.BatchNormalization(name="stem_bn")(x))
    x = L.Conv2D(width, 3, padding="same", activation="relu", name="wide")(x)
    y = L.Conv2D(16, 1, name="project")(x)
    x = L.Add(name="residual")([L.Conv2D(16, 1, name="skip")(x), y])
    outputs = L.Dense(10, name="head")(L.GlobalAveragePooling2D(name="pool")(x))
    return keras.Model(inputs, outputs, name="cnn")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("profile")
    x = np.random.default_rng(0).random((16, 24, 24, 3), dtype=np.float32)
    paths = {}
    for name, width in (("dense", 128), ("half", 64)):
        paths[name] = folder / f"{name}.tflite"
        export_tflite(cnn(width), paths[name], quantize="int8", representative_data=x)
    return paths


def test_the_first_k_operators_cut_out_compute_what_the_whole_model_computes(files, tmp_path):
    model = _read(files["dense"])
    whole = LiteRTModel.load(files["dense"])
    x = np.random.default_rng(1).random((3, 24, 24, 3), dtype=np.float32)
    path = tmp_path / "all.tflite"
    path.write_bytes(_pack(_prefix(model, len(model.subgraphs[0].operators))))
    np.testing.assert_array_equal(LiteRTModel.load(path).predict(x), whole.predict(x))
    first_two = _prefix(model, 2)  # conv+bn+relu fused, then the wide conv: its output feeds two consumers
    assert len(first_two.subgraphs[0].operators) == 2 and len(first_two.subgraphs[0].outputs) == 1


@pytest.mark.parametrize("method", ["in_context", "alone"])
def test_every_operator_is_measured_under_its_keras_layer_and_half_the_channels_cost_less(files, method):
    dense, half = profile_tflite([files["dense"], files["half"]], LocalLiteRT(runs=60, warmup=5), method=method)
    assert len(dense.ops) + len(dense.skipped) == len(_read(files["dense"]).subgraphs[0].operators)
    assert not dense.skipped and dense.method == method and dense.unit == "ms"
    layers = dense.by_layer()
    assert {"stem", "wide", "project", "skip", "residual", "pool", "head"} == set(layers)
    assert max(layers, key=layers.get) == "wide"  # 16 -> 128 channels, 3x3: most of the work
    assert half.by_layer()["wide"] < 0.8 * layers["wide"]
    if method == "in_context":  # the first k operators sum to the whole model, up to noise
        assert 0.7 < dense.coverage < 1.3
    table = format_profiles([dense, half], top=3)
    assert "wide" in table and "(4 more layers)" in table and f"measured {method.replace('_', ' ')} sum to" in table


@pytest.mark.skipif(find_sysroot("auto") is None, reason="no aarch64 sysroot (./.arm64-sysroot) or qemu-aarch64: "
                                                         "make test builds them as root, as make arm-check does")
def test_instruction_counts_of_the_operators_in_context_sum_to_the_whole_model(files):
    (profile,) = profile_tflite(files["half"], QemuInstructions(find_sysroot("auto"), cpu="cortex-a53"))
    assert profile.unit == "instructions"
    assert sum(op.cost for op in profile.ops) == pytest.approx(profile.whole - profile.overhead, rel=0.01)
    assert all(op.cost > 0 for op in profile.ops if op.op in ("CONV_2D", "FULLY_CONNECTED"))


def test_the_bench_command_profiles_plots_and_writes_json(files, tmp_path):
    plot, report = tmp_path / "where.png", tmp_path / "bench.json"
    done = subprocess.run([sys.executable, "-m", "tfprune.cli", "bench", "--profile", str(files["dense"]),
                           str(files["half"]), "--runs", "30", "--warmup", "3", "--top", "4", "--plot", str(plot),
                           "--json", str(report)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "wide" in done.stdout and "sum of operators" in done.stdout and "whole model" in done.stdout
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    profiles = json.loads(report.read_text())["profiles"]
    assert [p["path"] for p in profiles] == [str(files["dense"]), str(files["half"])]
    assert {op["layer"] for op in profiles[0]["ops"]} >= {"wide", "head"}
    unplotted = subprocess.run([sys.executable, "-m", "tfprune.cli", "bench", str(files["dense"]), "--plot",
                                str(tmp_path / "nothing.png")], capture_output=True, text=True)
    assert unplotted.returncode != 0 and "add --profile" in unplotted.stderr


def concrete_model(tmp_path, name, loop=False, buffer_offset=False):
    """A float32 .tflite from a tf.function: two matmuls (with a WHILE loop between them), weights inside the
    flatbuffer or after it (as the converter stores large models)."""
    import tensorflow as tf

    weights = np.random.default_rng(0).random((64, 64), dtype=np.float32) / 8

    @tf.function(input_signature=[tf.TensorSpec([1, 64], tf.float32)])
    def forward(x):
        y = tf.nn.relu(tf.matmul(x, weights))
        if loop:
            _, y = tf.while_loop(lambda i, y: i < 3, lambda i, y: (i + 1, tf.tanh(tf.matmul(y, weights))), [0, y])
        return tf.nn.sigmoid(tf.matmul(y, weights) + 1.0)

    converter = tf.lite.TFLiteConverter.from_concrete_functions([forward.get_concrete_function()], forward)
    converter._experimental_use_buffer_offset = buffer_offset
    path = tmp_path / name
    path.write_bytes(converter.convert())
    return path


@pytest.mark.parametrize("method", ["in_context", "alone"])
def test_models_with_a_loop_or_weights_after_the_flatbuffer_are_cut_whole(tmp_path, method):
    for path in (concrete_model(tmp_path, "loop.tflite", loop=True),
                 concrete_model(tmp_path, "offsets.tflite", buffer_offset=True)):
        model = _read(path)
        (profile,) = profile_tflite(path, LocalLiteRT(runs=3, warmup=1), method=method)
        assert not profile.skipped and len(profile.ops) == len(model.subgraphs[0].operators)
        x = np.random.default_rng(1).random((2, 64), dtype=np.float32)
        whole = tmp_path / "whole.tflite"
        whole.write_bytes(_pack(_prefix(model, len(model.subgraphs[0].operators))))
        np.testing.assert_array_equal(LiteRTModel.load(whole).predict(x), LiteRTModel.load(path).predict(x))
    assert "WHILE" in {op.op for op in profile_tflite(tmp_path / "loop.tflite", LocalLiteRT(runs=3))[0].ops}


def test_keras_auto_names_and_several_inputs_map_to_their_layers(tmp_path):
    keras.utils.set_random_seed(0)
    left, right = keras.Input((8, 8, 3)), keras.Input((8, 8, 3))
    x = L.Conv2D(8, 3)(L.Conv2D(8, 3)(left))  # "conv2d" and "conv2d_1": traced as scopes conv2d_1 and conv2d_1_2
    model = keras.Model([left, right], L.Add()([x, L.Conv2D(8, 5)(right)]))
    x = [np.random.default_rng(0).random((8, 8, 8, 3), dtype=np.float32) for _ in range(2)]
    export_tflite(model, tmp_path / "two.tflite", quantize="int8", representative_data=x)
    names = [layer.name for layer in model.layers if isinstance(layer, L.Conv2D)]
    for layer_names in (None, [layer.name for layer in model.layers]):
        (profile,) = profile_tflite(tmp_path / "two.tflite", LocalLiteRT(runs=3), layer_names=layer_names)
        assert not profile.skipped and set(names) <= set(profile.by_layer())


def test_a_file_that_is_not_tflite_and_an_unknown_method_are_named(files, tmp_path):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="bad.tflite' is not a TFLite model"):
        profile_tflite(bad)
    with pytest.raises(ValueError, match="'in_context' or 'alone'"):
        profile_tflite(files["dense"], method="sampled")
    with pytest.raises(ValueError, match="at least one"):
        profile_tflite([])

