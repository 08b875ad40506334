"""Counting instructions per inference under qemu-user (`tfprune.deploy.instructions`).

The counting itself is checked end to end with qemu-x86_64 running this machine's own Python
and LiteRT: the same plugin, marks and arithmetic as for aarch64, without an aarch64 sysroot.
`make test` installs qemu-user where it may (as root); elsewhere those tests say how to get it.
"""

import ctypes
import os
import platform
import shutil
import sys

import numpy as np
import pytest
import tensorflow as tf

from tfprune.deploy.aarch64 import SYSROOT_PYTHON, LiteRTProcess, find_sysroot
from tfprune.deploy.bench import benchmark_tflite, format_benchmark
from tfprune.deploy.devices import LocalLiteRT, QemuInstructions
from tfprune.deploy.instructions import MARK_SYSCALLS, _run_counted, build_plugin, check_plugin_support

needs_qemu = pytest.mark.skipif(shutil.which("qemu-x86_64") is None,
                                reason="qemu-user is not installed: make test installs it as root, or apt-get install "
                                       "qemu-user")


def _matmul_tflite(path, width):
    """A float .tflite of two matmuls of `width` units, made without Keras (so under any Keras backend)."""
    rng = np.random.default_rng(0)
    first, second = (tf.constant(rng.normal(size=s).astype("float32")) for s in ((32, width), (width, 10)))

    @tf.function(input_signature=[tf.TensorSpec((1, 32), tf.float32)])
    def model(x):
        return tf.matmul(tf.nn.relu(tf.matmul(x, first)), second)

    converter = tf.lite.TFLiteConverter.from_concrete_functions([model.get_concrete_function()], model)
    path.write_bytes(converter.convert())
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("instructions")
    return {width: _matmul_tflite(folder / f"w{width}.tflite", width) for width in (16, 512)}


@pytest.fixture(scope="module")
def plugin(tmp_path_factory):
    return build_plugin(tmp_path_factory.mktemp("plugin"))


def test_the_plugin_builds_once_and_declares_qemus_plugin_abi_version_1(plugin):
    library = ctypes.CDLL(os.fspath(plugin), mode=os.RTLD_LAZY)  # qemu's own functions stay unresolved
    assert ctypes.c_int.in_dll(library, "qemu_plugin_version").value == 1
    assert hasattr(library, "qemu_plugin_install")
    built = plugin.stat().st_mtime_ns
    assert build_plugin(plugin.parent) == plugin and plugin.stat().st_mtime_ns == built


def test_missing_tools_and_unknown_cpus_are_errors_naming_the_fix(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match=r"cpu='max'.*cortex-a53.*cortex-a76.*SME"):
        LiteRTProcess.aarch64(tmp_path, cpu="max")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match="'gcc' not found on PATH: apt-get install gcc"):
        build_plugin(tmp_path / "plugins")
    assert not (tmp_path / "plugins" / "count_instructions.so").exists()
    with pytest.raises(FileNotFoundError, match="'qemu-aarch64' not found on PATH: apt-get install qemu-user"):
        check_plugin_support("qemu-aarch64")


def test_a_qemu_without_plugin_support_is_refused(tmp_path, monkeypatch):
    fake = tmp_path / "bin" / "qemu-aarch64"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'usage: qemu-aarch64 [options] program [arguments...]'\necho '-cpu model'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(fake.parent))
    with pytest.raises(RuntimeError, match="without TCG plugin support"):
        check_plugin_support("qemu-aarch64")


def test_another_cpu_sees_the_sysroot_through_a_view_with_its_own_cpuinfo(tmp_path, monkeypatch):
    (tmp_path / SYSROOT_PYTHON).parent.mkdir(parents=True)
    (tmp_path / SYSROOT_PYTHON).write_bytes(b"")
    (tmp_path / "site").mkdir()
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc" / "cpuinfo").write_text("CPU part\t: 0xd0b\n")
    fake = tmp_path / "bin" / "qemu-aarch64"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(fake.parent))
    a76, a53 = (LiteRTProcess.aarch64(tmp_path, cpu=cpu) for cpu in ("cortex-a76", "cortex-a53"))
    root_a76, root_a53 = (p.command[p.command.index("-L") + 1] for p in (a76, a53))
    assert root_a76 == str(tmp_path.resolve())
    view = tmp_path.resolve() / "cpus" / "cortex-a53"
    assert root_a53 == str(view)
    assert "CPU part\t: 0xd03" in (view / "proc" / "cpuinfo").read_text()
    assert "asimddp" not in (view / "proc" / "cpuinfo").read_text()  # no dot product on an A53
    assert (view / SYSROOT_PYTHON).resolve() == (tmp_path / SYSROOT_PYTHON).resolve()


@needs_qemu
def test_counts_per_inference_are_repeatable_and_grow_with_the_work(models, plugin):
    host_under_qemu = LiteRTProcess(["qemu-x86_64", sys.executable], name="x86_64 (qemu-user)")
    small, large = _run_counted(host_under_qemu, plugin, MARK_SYSCALLS["x86_64"], [models[16], models[512]], None,
                                None, 3, True, 600)  # one emulated process for both
    for counted in (small, large):
        assert len(counted["windows"]) == 3 and counted["runs"] >= 1
        assert counted["spread"] < 0.01
        assert counted["marking_instructions"] > 0 and counted["call_instructions"] > 0
    assert small["runs"] > 10  # runs=None: a small model takes well under 20 ms per invoke even emulated
    # 32x512 + 512x10 multiply-adds against 32x16 + 16x10: the kernels' work grows about 30 times
    assert large["instructions_per_inference"] > 5 * small["instructions_per_inference"]


@needs_qemu
def test_runs_and_windows_are_as_asked(models, plugin):
    host_under_qemu = LiteRTProcess(["qemu-x86_64", sys.executable])
    (counted,) = _run_counted(host_under_qemu, plugin, MARK_SYSCALLS["x86_64"], [models[16]], None, 4, 2, False, 600)
    assert counted["runs"] == 4 and len(counted["windows"]) == 2 and counted["instructions_per_inference"] > 0


def test_the_bench_table_shows_instructions_beside_latency_with_ratios_and_the_caveat(models):
    result = benchmark_tflite([models[16], models[512]], runs=5, warmup=1)
    for entry, count in zip(result["models"], (1000.0, 3000.0)):
        entry.update(aarch64_instructions=count, aarch64_spread=0.0)
    result["settings"]["aarch64"] = {"cpu": "cortex-a53", "note": "not a latency"}
    table = format_benchmark(result).splitlines()
    assert "aarch64 instr" in table[0]
    assert table[2].split()[-2:] == ["3,000", "3.000"]
    assert table[-1] == "cortex-a53: not a latency"


def test_the_local_device_measures_milliseconds_that_grow_with_the_work(models):
    device = LocalLiteRT(runs=30, warmup=3)
    small, large = device.measure([models[16], models[512]])
    assert device.unit == "ms" and device.name.startswith(f"{platform.machine()}-")
    assert 0 < small.cost < large.cost and small.spread >= 0
    assert device.settings["num_threads"] == 1 and device.settings["ai_edge_litert"]


@pytest.mark.skipif(find_sysroot("auto") is None, reason="no aarch64 sysroot (./.arm64-sysroot) or qemu-aarch64: "
                                                         "make test builds them as root, as make arm-check does")
def test_the_qemu_device_counts_aarch64_instructions_under_its_own_name(models):
    device = QemuInstructions(find_sysroot("auto"), cpu="cortex-a53")
    small, large = device.measure([models[16], models[512]])
    assert device.name == "aarch64-cortex-a53-qemu-instructions" and device.unit == "instructions"
    assert large.cost > 5 * small.cost > 0 and small.spread < 0.01
