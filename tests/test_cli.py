"""The `tfprune` command's report and shrink, export's default output, unreadable files, and bench without Keras."""

import shutil
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

import tfprune
from tfprune import cli
from tfprune.deploy import export_tflite

TFPRUNE = Path(sys.executable).parent / "tfprune"  # the installed command


def _mlp():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8,))
    hidden = keras.layers.Dense(16, activation="relu", name="hidden")(inputs)
    return keras.Model(inputs, keras.layers.Dense(3, name="logits")(hidden))


@pytest.fixture(scope="module")
def channel_pruned(tmp_path_factory):
    """A saved model wrapped by prune_channels, with 8 of its 16 hidden units pruned."""
    model = tfprune.prune_channels(_mlp(), tfprune.ConstantSparsity(0.5, 0, frequency=1))
    model.compile("sgd", "mse")
    model.fit(np.ones((4, 8)), np.ones((4, 3)), verbose=0, callbacks=[tfprune.UpdatePruningStep()])
    path = tmp_path_factory.mktemp("cli") / "pruned.keras"
    model.save(path)
    return path


@pytest.fixture(scope="module")
def tiny_tflite(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "tiny.tflite"
    export_tflite(_mlp(), path, quantize=None)
    return path


@pytest.mark.parametrize("command", [[str(TFPRUNE)], ["-m", "tfprune.cli"]], ids=["script", "python-m"])
def test_bench_imports_neither_tensorflow_nor_keras(command, tiny_tflite):
    run = subprocess.run([sys.executable, "-X", "importtime", *command, "--verbose", "bench", str(tiny_tflite),
                          "--runs", "3", "--warmup", "0"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in run.stderr.splitlines() if line.startswith("import time:")}
    assert "ai_edge_litert.interpreter" in imported  # the trace covers the benchmark itself
    assert not {"tensorflow", "keras"} & imported


def test_report_shows_the_sparsity_of_pruned_and_stripped_models_and_their_cost(channel_pruned, tmp_path, capsys):
    stripped = tfprune.strip_pruning(tfprune.load_model(channel_pruned))
    stripped.save(tmp_path / "stripped.keras")
    for path, note in ((channel_pruned, "(without the pruning wrappers' masks)"),
                       (tmp_path / "stripped.keras", "no pruning wrappers")):
        assert cli.main(["report", str(path)]) == 0
        out = capsys.readouterr().out
        hidden_kernel = next(line for line in out.splitlines() if line.startswith("hidden "))
        assert "hidden/kernel" in hidden_kernel and hidden_kernel.endswith("50.00%")
        assert f"cost: {tfprune.model_cost(stripped)}" in out and note in out


def test_shrink_then_export_write_beside_the_input(channel_pruned, tmp_path, capsys):
    model_path = tmp_path / "m.keras"
    shutil.copy(channel_pruned, model_path)
    assert cli.main(["shrink", str(model_path)]) == 0
    assert "parameters 195 -> 99" in capsys.readouterr().out  # 8 of the 16 hidden units gone
    small = tfprune.load_model(tmp_path / "m.shrunk.keras")
    x = np.random.default_rng(0).normal(size=(5, 8)).astype("float32")
    np.testing.assert_allclose(small.predict(x, verbose=0),
                               tfprune.strip_pruning(tfprune.load_model(model_path)).predict(x, verbose=0), atol=1e-5)
    assert cli.main(["export", str(tmp_path / "m.shrunk.keras"), "--quantize", "none"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.keras", "m.shrunk.keras", "m.shrunk.tflite"]


def test_unreadable_model_files_are_one_line_errors_naming_the_file_and_the_fix(tmp_path, capsys):
    (tmp_path / "junk.keras").write_bytes(b"not a zip")
    expected = {"missing.keras": "No model file at '{}': check the path.",
                "junk.keras": "'{}' is not a valid .keras archive (corrupt or truncated: a .keras file is a zip). "
                              "Re-save the model"}
    for command in ("report", "shrink", "export"):
        for name, message in expected.items():
            path = str(tmp_path / name)
            assert cli.main([command, path, "--quantize", "none"] if command == "export" else [command, path]) == 2
            error = capsys.readouterr().err
            assert error.startswith(f"error: {message.format(path)}") and error.count("\n") == 1
    assert cli.main(["shrink", str(tmp_path / "junk.keras"), "-o", str(tmp_path / "small.h5")]) == 2
    assert "give a name ending in .keras" in capsys.readouterr().err


def test_command_loads_models_with_any_tfprune_class(channel_pruned):
    """The command imports tfprune's modules only when a command reads a .keras file; PruneChannels must load."""
    run = subprocess.run([str(TFPRUNE), "report", str(channel_pruned)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "hidden/kernel" in run.stdout and run.stderr == ""
