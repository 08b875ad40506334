"""TFLite export, verification, LiteRT benchmarking, the adb runner and the CLI."""

import json
import os
import platform
import stat
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

import tfprune
from tests.conftest import compile_classifier, mlp, prepare_tiny_tfds_dataset
from tfprune import cli
from tfprune.deploy import LiteRTModel, benchmark_tflite, export_tflite
from tfprune.deploy.aarch64 import SYSROOT_PYTHON, LiteRTProcess, build_sysroot, compare_with_host, find_sysroot
from tfprune.deploy.android import AdbBenchmark, parse_benchmark_output
from tfprune.deploy.devices import AndroidDevice

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def pruned_model(digits):
    (x, y), _ = digits
    model = compile_classifier(mlp())
    model.fit(x, y, epochs=8, batch_size=32, verbose=0)
    pruned = compile_classifier(tfprune.prune_low_magnitude(model, tfprune.ConstantSparsity(0.9, 0, frequency=20)))
    pruned.fit(x, y, epochs=3, batch_size=32, verbose=0, callbacks=[tfprune.UpdatePruningStep()])
    return model, pruned


@pytest.fixture(scope="module")
def exported(pruned_model, digits, tmp_path_factory):
    (x, _), (x_test, _) = digits
    _, pruned = pruned_model
    path = tmp_path_factory.mktemp("export") / "pruned_int8.tflite"
    report = export_tflite(pruned, path, quantize="int8", representative_data=x[:200], sparse_encoding=True,
                           parity_data=x_test)
    return path, report


def test_int8_export_is_integer_only_verified_and_keeps_the_zeros(exported):
    path, report = exported
    assert path.is_file() and path.stat().st_size == report.file_bytes
    assert report.integer_only and report.float_ops == []
    assert "FULLY_CONNECTED" in report.ops
    assert report.parity["outputs"]["output_0"]["top1_agreement"] >= 0.99
    kernels = [t for t in report.tensors if t["dtype"] == "INT8" and len(t["shape"]) == 2]
    assert len(kernels) == 3 and all(abs(t["sparsity"] - 0.9) < 0.01 for t in kernels)
    assert report.gzip_bytes < report.file_bytes / 2  # zeros compress
    lite = LiteRTModel.load(path)
    assert lite.input["dtype"] == np.int8 and lite.output["dtype"] == np.int8


def test_sparse_encoding_falls_back_when_default_interpreter_cannot_run_it(exported):
    _, report = exported
    assert report.sparse_encoding.startswith("dropped")
    assert any("XNNPack" in note for note in report.notes)


def test_float_and_float16_and_dynamic_exports_run_and_match(pruned_model, digits, tmp_path):
    _, (x_test, _) = digits
    model, _ = pruned_model
    for mode in (None, "float16", "dynamic"):
        report = export_tflite(model, tmp_path / f"{mode}.tflite", quantize=mode, parity_data=x_test[:100])
        assert report.parity["outputs"]["output_0"]["top1_agreement"] >= 0.98, mode
    exact = export_tflite(model, tmp_path / "f.tflite", parity_data=x_test[:50]).parity["outputs"]["output_0"]
    assert exact["max_abs_diff"] < 1e-4 and exact["sqnr_db"] > 80


def test_report_saves_as_json(exported, tmp_path):
    _, report = exported
    report.save_json(tmp_path / "r.json")
    assert json.loads((tmp_path / "r.json").read_text())["file_bytes"] == report.file_bytes


def test_int8_without_calibration_data_is_a_clear_error(pruned_model, tmp_path):
    with pytest.raises(ValueError, match="needs `representative_data`"):
        export_tflite(pruned_model[0], tmp_path / "m.tflite", quantize="int8")
    assert not (tmp_path / "m.tflite").exists()


def test_calibration_data_of_the_wrong_shape_is_a_clear_error(pruned_model, tmp_path):
    with pytest.raises(ValueError, match=r"shape \(32,\).*expects \(64,\)"):
        export_tflite(pruned_model[0], tmp_path / "m.tflite", quantize="int8", representative_data=np.zeros((8, 32)))
    with pytest.raises(TypeError, match="representative_data"):
        export_tflite(pruned_model[0], tmp_path / "m.tflite", quantize="int8", representative_data=3.5)


def test_calibration_accepts_datasets_and_generators(pruned_model, digits, tmp_path):
    import tensorflow as tf

    (x, _), _ = digits
    dataset = tf.data.Dataset.from_tensor_slices(x[:64]).batch(16)
    assert export_tflite(pruned_model[0], tmp_path / "a.tflite", quantize="int8", representative_data=dataset).integer_only
    generator = (x[i : i + 8] for i in range(0, 64, 8))
    assert export_tflite(pruned_model[0], tmp_path / "b.tflite", quantize="int8", representative_data=generator).integer_only


def test_unwritable_path_is_rejected_before_converting(pruned_model, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        export_tflite(pruned_model[0], tmp_path / "no" / "such" / "m.tflite")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
    if os.access(locked, os.W_OK):  # root ignores permissions: nothing to check then
        return
    with pytest.raises(PermissionError, match="not writable"):
        export_tflite(pruned_model[0], locked / "m.tflite")


def test_parity_failure_writes_nothing_or_warns(pruned_model, digits, tmp_path):
    (x, _), _ = digits
    target = tmp_path / "m.tflite"
    with pytest.raises(ValueError, match="Nothing was written"):
        export_tflite(pruned_model[0], target, quantize="int8", representative_data=x[:50], min_agreement=1.01)
    assert not target.exists() and not list(tmp_path.iterdir())
    with pytest.warns(UserWarning, match="agreement"):
        export_tflite(pruned_model[0], target, quantize="int8", representative_data=x[:50], min_agreement=1.01,
                      on_parity_failure="warn")
    assert target.is_file()


def test_unsupported_quantize_mode_is_rejected(pruned_model, tmp_path):
    with pytest.raises(ValueError, match="quantize"):
        export_tflite(pruned_model[0], tmp_path / "m.tflite", quantize="int4")


def test_subclassed_model_exports(digits, tmp_path):
    from tests.test_api import TwoLayerNet

    (x, _), _ = digits
    model = TwoLayerNet()
    model(x[:2])
    report = export_tflite(model, tmp_path / "s.tflite", parity_data=x[:20])
    assert report.parity["outputs"]["output_0"]["top1_agreement"] == 1.0


def test_benchmark_measures_models_side_by_side(exported, pruned_model, tmp_path):
    path, _ = exported
    dense_path = tmp_path / "dense.tflite"
    export_tflite(pruned_model[0], dense_path)
    result = benchmark_tflite([dense_path, path], runs=30, warmup=5)
    assert [Path(m["path"]).name for m in result["models"]] == ["dense.tflite", "pruned_int8.tflite"]
    for m in result["models"]:
        assert 0 < m["median_ms"] <= m["p90_ms"] <= m["p99_ms"] and m["first_inference_ms"] > 0
    assert result["settings"]["use_xnnpack"] is True and result["versions"]["ai_edge_litert"]
    no_xnn = benchmark_tflite(path, runs=5, warmup=0, use_xnnpack=False)
    assert no_xnn["settings"]["use_xnnpack"] is False and no_xnn["models"][0]["median_ms"] > 0


def test_corrupt_tflite_is_rejected_by_bench(tmp_path):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match="not a TFLite model"):
        benchmark_tflite(bad)
    with pytest.raises(FileNotFoundError):
        benchmark_tflite(tmp_path / "missing.tflite")


def test_parser_reads_recorded_benchmark_model_output():
    result = parse_benchmark_output((DATA / "benchmark_model_output.txt").read_text())
    assert result["init_ms"] == pytest.approx(4.211)
    assert result["first_inference_ms"] == pytest.approx(0.402)
    assert result["mean_ms"] == pytest.approx(0.1552)
    assert result["median_ms"] == pytest.approx(0.151)
    assert result["runs"] == 6420 and result["min_ms"] == pytest.approx(0.141)
    assert result["memory_mb"] == {"init_delta": 2.98047, "overall_delta": 3.41797, "peak": 9.51172}
    assert [op["op"] for op in result["ops"]] == ["FULLY_CONNECTED", "SOFTMAX"]
    assert result["ops"][0]["avg_ms"] == pytest.approx(0.121)


def test_parser_explains_a_failed_run():
    with pytest.raises(ValueError, match=r"(?s)the run failed.*Segmentation fault"):
        parse_benchmark_output("INFO: Loaded model\nSegmentation fault\n")


FAKE_ADB = """#!/usr/bin/env bash
echo "$@" >> "{log}"
case "$*" in
  devices) printf 'List of devices attached\\nR58M123\\tdevice\\nemulator-5554\\toffline\\n' ;;
  *benchmark_model\\ --graph*) cat "{output}" ;;
  *getprop*) echo arm64-v8a ;;
esac
"""


@pytest.fixture
def fake_adb(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "adb.log"
    adb = bin_dir / "adb"
    adb.write_text(FAKE_ADB.format(log=log, output=DATA / "benchmark_model_output.txt"))
    adb.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    binary = tmp_path / "benchmark_model"
    binary.write_bytes(b"\x7fELF fake")
    return log, binary


def test_adb_runner_pushes_runs_and_parses(fake_adb, exported):
    log, binary = fake_adb
    path, _ = exported
    result = AdbBenchmark(binary, serial="R58M123").run(path, num_threads=4, runs=50, warmup=5)
    calls = log.read_text().splitlines()
    assert calls[0] == "devices"
    assert "-s R58M123 push" in calls[2] and calls[2].endswith("/data/local/tmp/tfprune/benchmark_model")
    assert any(c.startswith("-s R58M123 push") and c.endswith("/data/local/tmp/tfprune/pruned_int8.tflite") for c in calls)
    run = next(c for c in calls if "--graph=" in c)
    for flag in ("--num_threads=4", "--num_runs=50", "--warmup_runs=5", "--use_xnnpack=true", "--enable_op_profiling=true"):
        assert flag in run
    assert result["machine"]["abi"] == "arm64-v8a"
    assert result["models"][0]["median_ms"] == pytest.approx(0.151)


def test_an_android_device_measures_median_milliseconds_with_benchmark_model(fake_adb, exported):
    log, binary = fake_adb
    path, _ = exported
    device = AndroidDevice(binary, serial="R58M123", num_threads=2, runs=40)
    (measured,) = device.measure([path])
    assert device.name == "android-R58M123-benchmark_model" and device.unit == "ms"
    assert measured.cost == pytest.approx(0.151) and measured.spread > 0  # as benchmark_model reported
    assert "--enable_op_profiling=false" in log.read_text() and "--num_threads=2" in log.read_text()


def test_adb_device_not_found(fake_adb):
    _, binary = fake_adb
    with pytest.raises(RuntimeError, match="'emulator-5554' not found or not authorized"):
        AdbBenchmark(binary, serial="emulator-5554").check_device()


def test_adb_not_installed(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    binary = tmp_path / "benchmark_model"
    binary.write_bytes(b"x")
    with pytest.raises(FileNotFoundError, match="'adb' not found on PATH"):
        AdbBenchmark(binary)
    with pytest.raises(FileNotFoundError, match="benchmark_model binary not found"):
        AdbBenchmark(tmp_path / "nope")


def test_cli_export_and_bench(pruned_model, tmp_path, capsys):
    model_path = tmp_path / "pruned.keras"
    pruned_model[1].save(model_path)
    out = tmp_path / "cli.tflite"
    assert cli.main(["export", str(model_path), "-o", str(out), "--quantize", "int8", "--calibration", "digits",
                     "--report", str(tmp_path / "r.json")]) == 0
    assert out.is_file() and json.loads((tmp_path / "r.json").read_text())["integer_only"]
    assert cli.main(["bench", str(out), "--runs", "10", "--warmup", "1", "--json", str(tmp_path / "b.json")]) == 0
    assert "cli.tflite" in capsys.readouterr().out
    assert json.loads((tmp_path / "b.json").read_text())["models"][0]["median_ms"] > 0
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"junk")
    assert cli.main(["bench", str(bad)]) == 2
    assert "not a TFLite model" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="--benchmark-binary"):
        cli.main(["bench", str(out), "--adb", "R58"])


PERTURBING_RUNNER = """
import sys, runpy
import numpy as np
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
with np.load(sys.argv[3]) as result:
    outputs, machine = result["outputs"], result["machine"]
outputs[:5] = outputs[:5] + 1  # five samples come back one quantization step off
np.savez(sys.argv[3], outputs=outputs, machine=machine)
"""


def test_litert_process_gets_the_hosts_raw_inputs_and_outputs(exported, digits):
    path, _ = exported
    _, (x_test, _) = digits
    result = compare_with_host(path, x_test[:100], LiteRTProcess([sys.executable]))
    assert result["other_machine"] == platform.machine() and result["samples"] == 100
    assert result["output_dtype"] == "int8"
    assert result["raw_exact_match"] == 1.0 and result["max_raw_diff"] == 0 and result["top1_agreement"] == 1.0


def test_comparison_counts_samples_that_differ(exported, digits, tmp_path):
    path, _ = exported
    _, (x_test, _) = digits
    runner = tmp_path / "perturb.py"
    runner.write_text(PERTURBING_RUNNER)
    result = compare_with_host(path, x_test[:50], LiteRTProcess([sys.executable, runner]))
    assert result["raw_exact_match"] == pytest.approx(45 / 50)
    assert result["max_raw_diff"] == 1 and result["max_abs_diff"] > 0


def test_a_failing_litert_process_says_why(tmp_path):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"junk")
    with pytest.raises(RuntimeError, match="LiteRT on .* failed"):
        LiteRTProcess([sys.executable]).run(bad, np.zeros((1, 64), np.int8))


def test_aarch64_runtime_needs_a_sysroot_and_qemu(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="not an aarch64 sysroot: build it with build_sysroot"):
        LiteRTProcess.aarch64(tmp_path)
    (tmp_path / SYSROOT_PYTHON).parent.mkdir(parents=True)
    (tmp_path / SYSROOT_PYTHON).write_bytes(b"")
    (tmp_path / "site").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match="'qemu-aarch64' not found on PATH: apt-get install qemu-user"):
        LiteRTProcess.aarch64(tmp_path)


def _xnnpack_sparse_net(head):
    """A network XNNPack runs sparsely on ARM (stride-2 stem to global pooling), its 1x1 convolutions 90% zero."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.ZeroPadding2D(1)(inputs)
    x = keras.layers.Conv2D(16, 3, strides=2, activation="relu")(x)
    for _ in range(2):
        x = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu")(x)
        x = keras.layers.Conv2D(64, 1, activation="relu")(x)
    if head == "conv":  # the head aarch64 XNNPack cannot prepare sparsely
        x = keras.layers.Reshape((10,))(keras.layers.Conv2D(10, 1)(keras.layers.GlobalAveragePooling2D(keepdims=True)(x)))
    else:
        x = keras.layers.Dense(10)(keras.layers.GlobalAveragePooling2D()(x))
    pruned = tfprune.prune_low_magnitude(keras.Model(inputs, x), tfprune.ConstantSparsity(0.9, 0),
                                         pruning_policy=tfprune.PruneForLatencyOnXNNPack())
    tfprune.PruningController(pruned).prune_to(0.9)
    return pruned


needs_aarch64 = pytest.mark.skipif(find_sysroot("auto") is None,
                                   reason="no aarch64 sysroot (./.arm64-sysroot) or qemu-aarch64: make test builds "
                                          "them as root, as make arm-check does")


@needs_aarch64
def test_a_sparse_export_that_aarch64_cannot_run_is_refused_naming_the_reason(tmp_path):
    x = np.random.default_rng(0).uniform(0, 1, (8, 32, 32, 3)).astype("float32")
    refused = export_tflite(_xnnpack_sparse_net("conv"), tmp_path / "conv.tflite", sparse_encoding=True, parity_data=x)
    assert refused.sparse_encoding == "dropped (fails on aarch64 LiteRT)"
    assert "cannot run it" in refused.notes[0] and "failed to prepare" in refused.notes[0]
    assert LiteRTModel.load(tmp_path / "conv.tflite").smoke_test()  # the dense encoding was written instead
    kept = export_tflite(_xnnpack_sparse_net("dense"), tmp_path / "dense.tflite", sparse_encoding=True, parity_data=x)
    assert kept.sparse_encoding == "on" and kept.file_bytes < 0.6 * refused.file_bytes
    assert kept.notes == [next(n for n in kept.notes if n.startswith("sparse encoding runs on aarch64 cortex-a76"))]


def test_a_sparse_export_without_an_aarch64_sysroot_says_it_was_checked_on_x86_only(tmp_path, monkeypatch):
    monkeypatch.setenv("TFPRUNE_ARM_SYSROOT", str(tmp_path / "none"))
    report = export_tflite(_xnnpack_sparse_net("dense"), tmp_path / "m.tflite", sparse_encoding=True)
    assert report.sparse_encoding == "on"
    assert any("checked on x86 only" in note and "make arm-check" in note for note in report.notes)
    with pytest.raises(FileNotFoundError, match="not an aarch64 sysroot: build it with build_sysroot"):
        export_tflite(_xnnpack_sparse_net("dense"), tmp_path / "asked.tflite", sparse_encoding=True,
                      arm_sysroot=tmp_path / "none")
    assert not (tmp_path / "asked.tflite").exists()


@pytest.mark.parametrize(
    "foreign_arches, error",
    [("i386", "dpkg --add-architecture arm64 && apt-get update"), ("arm64", "apt-get download .* failed")],
)
def test_sysroot_build_failures_say_why_and_leave_nothing(foreign_arches, error, tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool, script in (("dpkg", f"echo {foreign_arches}"), ("apt-get", "echo 'E: no mirror' >&2; exit 100")):
        (bin_dir / tool).write_text(f"#!/bin/sh\n{script}\n")
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    with pytest.raises(RuntimeError, match=error):
        build_sysroot(tmp_path / "sysroot")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bin"]


def test_cli_arm_check_without_the_tools_is_a_clear_error(exported, tmp_path, monkeypatch, capsys):
    path, _ = exported
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert cli.main(["arm-check", str(path), "--inputs", "digits", "--sysroot", str(tmp_path / "sysroot")]) == 2
    assert "'apt-get' not found on PATH" in capsys.readouterr().err


TFPRUNE = Path(sys.executable).parent / "tfprune"  # the installed command


def _command(*args, cwd):
    return subprocess.run([str(TFPRUNE), *args], capture_output=True, text=True, cwd=cwd)


CUSTOM_LAYER = '''
import keras


class Doubler(keras.layers.Layer):
    def call(self, x):
        return 2.0 * x
'''


def test_command_is_quick_to_start_quiet_and_loads_custom_classes(tmp_path):
    assert _command("--version", cwd=tmp_path).stdout.strip() == f"tfprune {tfprune.__version__}"
    bench_help = " ".join(_command("bench", "--help", cwd=tmp_path).stdout.split())
    assert "(default: 200)" in bench_help and "(default: None)" not in bench_help  # real defaults are shown
    (tmp_path / "my_layers.py").write_text(CUSTOM_LAYER)
    sys.path.insert(0, str(tmp_path))
    try:
        from my_layers import Doubler
    finally:
        sys.path.remove(str(tmp_path))
    inputs = keras.Input((4,))
    keras.Model(inputs, keras.layers.Dense(2)(Doubler()(inputs))).save(tmp_path / "custom.keras")
    np.save(tmp_path / "cal.npy", np.random.default_rng(0).normal(size=(40, 4)).astype("float32"))

    missing = _command("export", "custom.keras", "-o", "m.tflite", "--quantize", "none", cwd=tmp_path)
    assert missing.returncode == 2 and "custom class 'Doubler'" in missing.stderr and "--custom-objects" in missing.stderr
    done = _command("export", "custom.keras", "-o", "m.tflite", "--calibration", "cal.npy", "--custom-objects",
                    "my_layers.py", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "SQNR" in done.stdout and (tmp_path / "m.tflite").is_file()
    assert "I0000" not in done.stderr and "absl" not in done.stderr  # TensorFlow's C++ log lines are dropped
    no_calibration = _command("export", "custom.keras", "-o", "n.tflite", cwd=tmp_path)
    assert no_calibration.returncode == 2 and "--quantize int8 needs --calibration" in no_calibration.stderr


def test_cli_calibrates_from_a_prepared_tfds_dataset_and_explains_an_unprepared_one(pruned_model, tmp_path,
                                                                                     monkeypatch, capsys):
    name = prepare_tiny_tfds_dataset(tmp_path / "tfds")
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
    model_path = tmp_path / "m.keras"
    pruned_model[0].save(model_path)
    assert cli.main(["export", str(model_path), "-o", str(tmp_path / "m.tflite"), "--calibration",
                     f"tfds:{name}:test"]) == 0
    assert "parity on 20 samples" in capsys.readouterr().out  # the 20 test-split images calibrated and checked it
    assert cli.main(["export", str(model_path), "-o", str(tmp_path / "n.tflite"), "--calibration", "tfds:mnist"]) == 2
    error = capsys.readouterr().err
    assert "--calibration tfds:mnist: TFDS dataset 'mnist' is not prepared" in error and "download_and_prepare" in error
    assert cli.main(["export", str(model_path), "-o", str(tmp_path / "n.tflite"), "--calibration",
                     f"tfds:{name}:validation"]) == 2
    assert "has no split 'validation'" in capsys.readouterr().err
