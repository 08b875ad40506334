"""Export on the kinds of model that broke it: near-uniform classifiers, regressors, RNNs, token ids, several I/O,
inputs by name (dicts), ops without a TFLite kernel."""

import json
import os

import keras
import numpy as np
import pytest

import tfprune
from tfprune.deploy import LiteRTModel, export_tflite
from tfprune.deploy import export as export_module
from tfprune.deploy import parity

L = keras.layers


def _untrained_mobilenet_block():
    """An untrained MobileNet-like classifier: its softmax outputs are near-uniform, so top-1 means nothing."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((16, 16, 3)), L.Conv2D(8, 3, strides=2, padding="same"), L.BatchNormalization(), L.ReLU(6.0),
        L.DepthwiseConv2D(3, padding="same"), L.Conv2D(16, 1), L.ReLU(6.0), L.GlobalAveragePooling2D(),
        L.Dense(10, activation="softmax", kernel_initializer=keras.initializers.RandomNormal(stddev=1e-3)),
    ])
    return model, np.random.default_rng(0).uniform(-1, 1, (120, 16, 16, 3)).astype("float32")


def _conv1d_regressor():
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).normal(size=(300, 24, 2)).astype("float32")
    y = x[:, :, 0].mean(axis=1) + np.tanh(x[:, :4, 1].sum(axis=1))
    model = keras.Sequential([keras.Input((24, 2)), L.Conv1D(8, 3, activation="relu"), L.GlobalAveragePooling1D(),
                              L.Dense(1)])
    model.compile("adam", "mse")
    model.fit(x, y, epochs=5, verbose=0)
    return model, x


def test_near_uniform_classifier_exports_int8_judged_by_sqnr_not_top1(tmp_path):
    model, x = _untrained_mobilenet_block()
    report = export_tflite(model, tmp_path / "m.tflite", quantize="int8", representative_data=x[:100],
                           parity_data=x[100:])
    metrics = report.parity["outputs"]["output_0"]
    # Softmax outputs within 1e-3 of 0.1: their spread is below the INT8 output step (1/256), so the error is
    # large relative to it, but as small as INT8 allows. The old top-1 check refused this model.
    assert report.parity["passed"] and metrics["within_resolution"] and metrics["max_abs_diff"] < 0.01
    assert metrics["top1_agreement"] is None and metrics["top1_samples"] < 10  # no clear margins: not judged
    assert "top-1 not judged" in report.summary() and report.parity["sqnr_rules"] == {"output_0": "within resolution"}
    assert f"SQNR {metrics['sqnr_db']:.1f} dB" in report.summary() and metrics["sqnr_db"] < 12
    assert "below the 12 dB floor but passed as within resolution" in report.summary()


def test_a_pass_below_the_sqnr_floor_names_the_rule_that_passed_it():
    rng = np.random.default_rng(0)
    step = 1 / 256
    # As ResNet50V2 shrunk to INT8: a near-constant output, errors under half its spread, SQNR just below 12 dB.
    expected = 0.5 + rng.normal(0, 1.5 * step, (400, 1))
    metrics = parity.output_metrics(expected, expected + rng.uniform(-0.7, 0.7, expected.shape) * step, step)
    outputs = {"output_0": metrics}
    assert 10 < metrics["sqnr_db"] < 12 and metrics["max_rel_error"] < 0.5 and metrics["within_resolution"]
    assert parity.failures(outputs, "int8", 0.99) == [] and parity.sqnr_rule(metrics, 12.0) == "within resolution"
    assert "below the 12 dB floor but passed as within resolution" in parity.summary_line(outputs, 12.0)
    assert parity.sqnr_rule(metrics, 10.0) == "floor" and "passed as" not in parity.summary_line(outputs, 10.0)
    far = {"output_0": parity.output_metrics(expected, expected + 4 * step, step)}  # off by 4 steps: fails
    assert parity.sqnr_rule(far["output_0"], 12.0) == "below floor" and parity.failures(far, "int8", 0.99)


def test_regressor_parity_catches_a_collapsed_int8_output(tmp_path):
    model, x = _conv1d_regressor()
    good = export_tflite(model, tmp_path / "good.tflite", quantize="int8", representative_data=x[:200],
                         parity_data=x[200:])
    assert good.parity["passed"] and good.parity["outputs"]["output_0"]["sqnr_db"] > 20
    target = tmp_path / "bad.tflite"
    # Calibrated on inputs 1000x too small: activations saturate and the output is nearly constant.
    advice = r"Calibrate with more representative inputs.*Tried quantize='dynamic' on the same samples: .*it passes"
    with pytest.raises(ValueError, match=rf"output_0: SQNR -?\d+\.\d dB < 12 dB.*{advice}.*Nothing was written"):
        export_tflite(model, target, quantize="int8", representative_data=x[:200] * 1e-3, parity_data=x[200:])
    assert not target.exists()


@pytest.mark.parametrize("recurrent", ["LSTM", "GRU", "SimpleRNN", "Bidirectional(LSTM)"])
def test_recurrent_text_models_export_in_every_mode_with_token_ids_kept_integer(recurrent, tmp_path):
    keras.utils.set_random_seed(0)
    layer = {"LSTM": L.LSTM(8), "GRU": L.GRU(8), "SimpleRNN": L.SimpleRNN(8),
             "Bidirectional(LSTM)": L.Bidirectional(L.LSTM(8))}[recurrent]
    tokens = keras.Input((12,), dtype="int32", name="tokens")
    model = keras.Model(tokens, L.Dense(3)(layer(L.Embedding(60, 8)(tokens))))
    ids = np.random.default_rng(0).integers(0, 60, (120, 12)).astype("int32")
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(ids, ids[:, 0] % 3, epochs=8, verbose=0)  # briefly trained, as a real text model would be
    for mode in (None, "dynamic", "int8"):
        report = export_tflite(model, tmp_path / f"{mode}.tflite", quantize=mode, representative_data=ids[:80],
                               parity_data=ids[80:])
        assert report.parity["passed"], (mode, report.parity)
        assert report.io[0] == "input 'tokens' (int32): int32 (kept integer, not quantized)"
        assert "WHILE" not in report.ops and any("unrolled" in note for note in report.notes)
        lite = LiteRTModel.load(tmp_path / f"{mode}.tflite")  # the default interpreter runs it
        assert lite.input["dtype"] == np.int32


def test_recurrent_layer_with_variable_length_exports_as_a_loop_except_in_int8(tmp_path):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((None, 4))
    model = keras.Model(inputs, L.Dense(2)(L.GRU(4)(inputs)))
    x = np.random.default_rng(0).normal(size=(20, 7, 4)).astype("float32")
    report = export_tflite(model, tmp_path / "loop.tflite", quantize="dynamic", parity_data=x)
    assert report.parity["passed"] and "WHILE" in report.ops and any("batch size 1" in n for n in report.notes)
    lite = LiteRTModel.load(tmp_path / "loop.tflite")
    longer = np.random.default_rng(1).normal(size=(3, 11, 4)).astype("float32")  # another length runs too
    np.testing.assert_allclose(lite.predict(longer), model.predict(longer, verbose=0), atol=0.05)
    with pytest.raises(ValueError, match="variable number of time steps.*keras.Input.*quantize='dynamic'"):
        export_tflite(model, tmp_path / "m.tflite", quantize="int8", representative_data=x)


def test_two_inputs_two_outputs_are_fed_and_checked_each(tmp_path):
    keras.utils.set_random_seed(0)
    features, ids = keras.Input((6,), name="features"), keras.Input((4,), dtype="int32", name="ids")
    h = L.Concatenate()([L.Dense(8, activation="relu")(features), L.Flatten()(L.Embedding(20, 2)(ids))])
    model = keras.Model([features, ids], [L.Dense(3, name="classes")(h), L.Dense(1, name="score")(h)])
    rng = np.random.default_rng(0)
    x = [rng.normal(size=(150, 6)).astype("float32"), rng.integers(0, 20, (150, 4)).astype("int32")]
    report = export_tflite(model, tmp_path / "m.tflite", quantize="int8", representative_data=[a[:100] for a in x],
                           parity_data={"features": x[0][100:], "ids": x[1][100:]})
    assert set(report.parity["outputs"]) == {"output_0", "output_1"} and report.parity["passed"]
    assert report.io[:2] == ["input 'features' (float32): int8, quantized " + report.io[0].split("quantized ")[1],
                             "input 'ids' (int32): int32 (kept integer, not quantized)"]
    classes, score = LiteRTModel.load(tmp_path / "m.tflite").predict(x)
    expected_classes, expected_score = model.predict(x, verbose=0)
    assert classes.shape == (150, 3) and score.shape == (150, 1)
    assert np.corrcoef(score[:, 0], expected_score[:, 0])[0, 1] > 0.98  # random weights, which differ by backend
    assert np.mean(np.argmax(classes, -1) == np.argmax(expected_classes, -1)) > 0.9


@pytest.fixture(scope="module")
def wide_and_deep():
    """A pruned Wide&Deep regressor called with a dict: a float "numeric" input and an int "category" id."""
    keras.utils.set_random_seed(0)
    numeric, category = keras.Input((5,), name="numeric"), keras.Input((1,), dtype="int32", name="category")
    deep = L.Dense(16, activation="relu")(L.Concatenate()([numeric, L.Flatten()(L.Embedding(10, 4)(category))]))
    wide = L.Flatten()(L.Embedding(10, 1)(category))
    model = keras.Model({"numeric": numeric, "category": category}, L.Add()([L.Dense(1)(deep), wide]))
    rng = np.random.default_rng(0)
    x = {"numeric": rng.normal(size=(300, 5)).astype("float32"),
         "category": rng.integers(0, 10, (300, 1)).astype("int32")}
    y = x["numeric"] @ rng.normal(size=5) + np.sin(x["category"][:, 0])
    pruned = tfprune.prune_low_magnitude(model, tfprune.ConstantSparsity(0.5, 0, frequency=5))
    pruned.compile("adam", "mse")
    pruned.fit(x, y, epochs=10, verbose=0, callbacks=[tfprune.UpdatePruningStep()])
    return pruned, x, y


@pytest.mark.parametrize("mode", [None, "dynamic", "float16", "int8"])
def test_dict_input_model_exports_in_every_mode_with_inputs_by_name(mode, wide_and_deep, tmp_path):
    import tensorflow as tf

    pruned, x, y = wide_and_deep
    calibration = tf.data.Dataset.from_tensor_slices((x, y)).batch(50)  # ({name: batch}, y) pairs
    report = export_tflite(pruned, tmp_path / "m.tflite", quantize=mode, representative_data=calibration,
                           parity_data={name: batch[200:] for name, batch in x.items()})
    assert report.parity["passed"] and report.parity["samples"] == 100, report.summary()
    assert report.io[0] == "input 'category' (int32): int32 (kept integer, not quantized)"  # an index stays one
    assert report.io[1].startswith(f"input 'numeric' (float32): {'int8, quantized' if mode == 'int8' else 'float32'}")
    signature = LiteRTModel.load(tmp_path / "m.tflite").interpreter.get_signature_runner()
    assert set(signature.get_input_details()) == {"numeric", "category"}


def test_dict_inputs_are_fed_by_name_whatever_order_the_interpreter_lists_them_in(tmp_path):
    keras.utils.set_random_seed(0)
    inputs = {"x2": keras.Input((3,), name="x2"), "x10": keras.Input((2,), name="x10")}
    model = keras.Model(inputs, L.Dense(1)(L.Concatenate()([L.Dense(4)(inputs["x2"]), inputs["x10"]])))
    rng = np.random.default_rng(0)
    x = {"x2": rng.normal(size=(20, 3)).astype("float32"), "x10": rng.normal(size=(20, 2)).astype("float32")}
    report = export_tflite(model, tmp_path / "m.tflite", parity_data=x)
    # Keras orders inputs "x10", "x2" (sorted keys), LiteRTModel "x2", "x10" (numbers by value): fed by name.
    assert report.parity["passed"] and report.io[:2] == ["input 'x10' (float32): float32",
                                                         "input 'x2' (float32): float32"]
    lite = LiteRTModel.load(tmp_path / "m.tflite")
    assert lite.input_names == ["x2", "x10"]
    np.testing.assert_allclose(lite.predict(x), model.predict(x, verbose=0), atol=1e-5)  # a dict, by name
    with pytest.raises(ValueError, match=r"missing \['x10'\], unknown \['x1'\]"):
        lite.predict({"x2": x["x2"], "x1": x["x10"]})


def test_bad_dict_data_names_the_missing_or_unknown_key_and_the_shape(wide_and_deep, tmp_path):
    pruned, x, y = wide_and_deep
    target = tmp_path / "m.tflite"
    typo = {"numeric": x["numeric"], "categroy": x["category"]}
    with pytest.raises(ValueError, match=r"`representative_data` gives inputs by name, but lacks input\(s\) "
                                         r"\['category'\] and has key\(s\) \['categroy'\] that name no input\. The "
                                         r"model's inputs are \['category', 'numeric'\]"):
        export_tflite(pruned, target, quantize="int8", representative_data=typo)
    with pytest.raises(ValueError, match=r"`parity_data` .* has key\(s\) \['label'\] that name no input"):
        export_tflite(pruned, target, parity_data={**x, "label": y})
    with pytest.raises(ValueError, match=r"samples of shape \(3,\) \(float32\) for input 'numeric', which expects "
                                         r"\(5,\) \(float32\)"):
        export_tflite(pruned, target, parity_data={"numeric": x["numeric"][:, :3], "category": x["category"]})
    with pytest.raises(ValueError, match=r"different numbers of samples per input .*\(300 for 'category', 200 for "
                                         r"'numeric'\)"):
        export_tflite(pruned, target, parity_data={"numeric": x["numeric"][:200], "category": x["category"]})
    assert not target.exists()


def test_keras_hub_gpt2_backbone_exports_int8_with_token_ids_and_mask_kept_integer(tmp_path):
    keras_hub = pytest.importorskip("keras_hub")
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.GPT2Backbone(vocabulary_size=100, num_layers=1, num_heads=2, hidden_dim=16,
                                             intermediate_dim=32, max_sequence_length=8)
    rng = np.random.default_rng(0)
    mask = (np.arange(8)[None] < rng.integers(2, 9, (32, 1))).astype("int32")  # sequences of 2 to 8 tokens
    x = {"token_ids": rng.integers(1, 100, (32, 8)).astype("int32") * mask, "padding_mask": mask}
    report = export_tflite(backbone, tmp_path / "gpt2.tflite", quantize="int8", representative_data=x)
    assert report.parity["passed"] and report.parity["outputs"]["output_0"]["sqnr_db"] > 25, report.summary()
    assert report.io[:2] == ["input 'padding_mask' (int32): int32 (kept integer, not quantized)",
                             "input 'token_ids' (int32): int32 (kept integer, not quantized)"]


def test_written_files_keep_the_users_umask_and_name_the_versions(tmp_path):
    model, x = _untrained_mobilenet_block()
    previous = os.umask(0o022)
    try:
        report = export_tflite(model, tmp_path / "m.tflite", parity_data=x[:10])
        report.save_json(tmp_path / "m.json")
    finally:
        os.umask(previous)
    assert (tmp_path / "m.tflite").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "m.json").stat().st_mode & 0o777 == 0o644
    saved = json.loads((tmp_path / "m.json").read_text())
    assert set(saved["versions"]) == {"tfprune", "tensorflow", "keras", "ai_edge_litert"}


def test_cli_calibrates_a_two_input_model_from_an_npz(tmp_path, capsys):
    from tfprune import cli

    keras.utils.set_random_seed(0)
    features, ids = keras.Input((6,), name="features"), keras.Input((4,), dtype="int32", name="ids")
    h = L.Concatenate()([L.Dense(8)(features), L.Flatten()(L.Embedding(20, 2)(ids))])
    keras.Model([features, ids], L.Dense(3)(h)).save(tmp_path / "two.keras")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "cal.npz", features=rng.normal(size=(60, 6)).astype("float32"),
             ids=rng.integers(0, 20, (60, 4)).astype("int32"))
    np.save(tmp_path / "cal.npy", rng.normal(size=(60, 6)).astype("float32"))
    common = ["export", str(tmp_path / "two.keras"), "-o", str(tmp_path / "two.tflite"), "--calibration"]
    assert cli.main(common + [str(tmp_path / "cal.npy")]) == 2
    assert "the model has 2 inputs; give an .npz file with one array per input, named features, ids" in (
        capsys.readouterr().err)
    assert cli.main(common + [str(tmp_path / "cal.npz")]) == 0
    assert "input 'ids' (int32): int32 (kept integer, not quantized)" in capsys.readouterr().out


def test_ops_without_a_tflite_kernel_need_select_tf_ops_and_the_report_says_flex(tmp_path):
    inputs = keras.Input((6,))
    model = keras.Model(inputs, L.Dense(3)(keras.ops.cumprod(L.Dense(6)(inputs), axis=-1)))
    x = np.random.default_rng(0).normal(size=(20, 6)).astype("float32")
    # The converter's message is long MLIR; the error keeps the op's name, where it is, and whether TensorFlow's
    # own path (no tfprune) fails too.
    with pytest.raises(ValueError, match=r"(?s)op\(s\) Cumprod have no TFLite kernel \(Cumprod at functional\w*/"
                                         r"Cumprod;.*TensorFlow alone fails on this model too .*no kernel for "
                                         r"Cumprod\): a TFLite limit.*select_tf_ops=True.*Flex delegate"):
        export_tflite(model, tmp_path / "m.tflite", parity_data=x)
    assert not (tmp_path / "m.tflite").exists()
    report = export_tflite(model, tmp_path / "m.tflite", parity_data=x, select_tf_ops=True)
    assert "CUSTOM:FlexCumprod" in report.ops and report.parity is None
    assert any("Cumprod" in note and "Flex delegate" in note and "Not verified" in note for note in report.notes)


def test_a_conversion_failure_tensorflow_alone_does_not_have_is_reported_as_tfprunes():
    inputs = keras.Input((6,))
    verdict = export_module._plain_tensorflow_verdict(keras.Model(inputs, L.Dense(3)(inputs)), None)
    assert verdict.startswith("TensorFlow alone converts this model") and "please report it to tfprune" in verdict
