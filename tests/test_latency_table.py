"""Latency tables measured with LiteRT on this machine, and pruning to a latency budget planned on them.

Timings are not asserted (they are noisy here): what is checked is what the table holds, how it is
cached and refused, and that the budget's search meets its target on the table's own predictions.
A table's probes and models are converted in a TensorFlow process of their own and measured by
LiteRT or qemu, whatever the Keras backend, so these tests run once, in the TensorFlow pass
(pruning to a budget under JAX is tested in test_budget.py).
"""

import json
import os
import shutil
import sys

import keras
import numpy as np
import pytest

import tfprune
from tfprune.deploy.aarch64 import find_sysroot
from tfprune.deploy.devices import AndroidDevice, LocalLiteRT, QemuInstructions
from tfprune.structured import channel_steps
from tfprune.structured.channel_cost import ChannelCost
from tfprune.structured.controller import ChannelController

L = keras.layers
pytestmark = pytest.mark.own_backend_processes


def small_cnn(width=32, seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input((16, 16, 3)), L.Conv2D(width, 3, padding="same", activation="relu", name="conv1"),
        L.Conv2D(width, 3, padding="same", activation="relu", name="conv2"), L.GlobalAveragePooling2D(),
        L.Dense(10, name="out")], name="small_cnn")


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    path = tmp_path_factory.mktemp("tables") / "small_cnn.json"
    return tfprune.LatencyTable.measure(small_cnn(), LocalLiteRT(runs=20, warmup=2), round_to=8, levels=3, cache=path,
                                        verbose=False)


def test_a_table_holds_every_prunable_layer_over_a_grid_of_round_to_multiples(table):
    assert table.unit == "ms" and table.dense > table.overhead > 0
    assert table.layers["conv1"]["roles"] == ["output"] and table.layers["conv2"]["roles"] == ["input", "output"]
    assert table.layers["out"]["roles"] == ["input"]
    grid = table.probes[table.layers["conv2"]["probe"]]["grid"]
    assert grid == [[8, 24, 32], [8, 24, 32]]  # 3 of the multiples of 8 from the fewest max_sparsity leaves to all
    values = np.array(table.probes[table.layers["conv2"]["probe"]]["values"])
    assert values.shape == (3, 3) and (values >= 0).all()
    assert table.layer_cost("conv2", [16, 32]) == pytest.approx((values[0, 2] + values[1, 2]) / 2)
    assert [c["sparsity"] for c in table.calibration] == [0.3, 0.6]
    assert table.rest_per_element >= 0
    assert 0 <= table.noise < 5 and all(probe["spread"] >= 0 for probe in table.probes.values())


def test_a_second_measure_reads_the_cache_and_another_device_or_model_measures_again(table, tmp_path):
    path = tmp_path / "copy.json"
    shutil.copy(table.path, path)  # a copy: later measures here overwrite it
    again = tfprune.LatencyTable.measure(small_cnn(), LocalLiteRT(runs=20, warmup=2), round_to=8, levels=3,
                                         cache=path, verbose=False)
    assert again.probes == table.probes and again.path == str(path)
    other = tfprune.LatencyTable.measure(small_cnn(), LocalLiteRT(num_threads=2, runs=5, warmup=1), round_to=8,
                                         levels=2, cache=path, verbose=False)
    assert other.key["settings"]["num_threads"] == 2 and json.loads(path.read_text())["key"] == other.key
    with pytest.raises(ValueError, match="measured for another model"):
        table.check_model(keras.Sequential([keras.Input((8, 8, 3)), *small_cnn().layers]))
    with pytest.raises(ValueError, match=r"'conv1' has \[40\] channels, more than the \[32\]"):
        table.predict(small_cnn(width=40))
    narrower = small_cnn(width=24)  # a model like a pruned copy: predicted, and planned for from its own cost
    assert table.predict(narrower) < table.dense
    measured = tfprune.LatencyTable.measure(narrower, LocalLiteRT(runs=5, warmup=1), round_to=8, levels=2,
                                            cache=path, verbose=False)
    assert measured.layers["conv1"]["channels"] == [24]  # its own table: the cache is keyed by channel counts too


def test_a_float32_table_measures_float_probes_and_is_cached_apart_from_the_int8_one(table, tmp_path):
    path = tmp_path / "float.json"
    shutil.copy(table.path, path)  # the INT8 table in the same file: another key, so measured again
    float32 = tfprune.LatencyTable.measure(small_cnn(), LocalLiteRT(runs=10, warmup=1), quantize=None, round_to=8,
                                           levels=3, cache=path, verbose=False)
    assert float32.key["quantize"] is None and table.key["quantize"] == "int8"
    assert float32.probes.keys() == table.probes.keys()  # the same probes, converted otherwise
    assert float32.predict(small_cnn()) == pytest.approx(float32.dense)
    narrower = small_cnn(width=16)
    assert float32.predict(narrower) < float32.dense


def test_channel_steps_are_ended_by_the_smallest_multiples_that_reach_the_next_step():
    counts = np.array(channel_steps.COUNTS)
    noise = 1 + 0.004 * np.random.default_rng(0).standard_normal(len(counts))
    in_sixteens = (1 + np.ceil(counts / 16)) * noise  # a 1x1 conv's outputs on AVX-512: one step per 16 channels
    in_eights = (1 + np.ceil(counts / 8) / 2) * noise
    shares = channel_steps.shares_inside_a_step({"outputs": in_sixteens, "inputs": in_eights})
    assert shares["outputs"][16] == 0 and shares["outputs"][8] == pytest.approx(0.5, abs=0.1)
    assert shares["inputs"][8] == 0 and shares["inputs"][1] > 0.8
    assert channel_steps.step_ends(shares) == 16
    assert channel_steps.step_ends(channel_steps.shares_inside_a_step({"linear": counts * 1.0})) == 1
    assert channel_steps.step_ends(channel_steps.shares_inside_a_step({"flat": np.ones(len(counts))})) == 1


def test_an_auto_round_to_table_holds_the_devices_channel_steps_and_budgets_keep_them(tmp_path, monkeypatch):
    monkeypatch.setenv("TFPRUNE_CACHE", str(tmp_path))
    table = tfprune.LatencyTable.measure(small_cnn(), LocalLiteRT(runs=10, warmup=1), levels=2, verbose=False)
    assert table.round_to in channel_steps.CANDIDATES and table.key["round_to"] == "auto"
    for entry in table.layers.values():
        for grid, full in zip(table.probes[entry["probe"]]["grid"], entry["channels"]):
            assert all(count % table.round_to == 0 or count == full for count in grid)
    (cached,) = (tmp_path / "latency").glob("round_to-*.json")
    assert json.loads(cached.read_text())["round_to"] == table.round_to

    class Unmeasured(LocalLiteRT):
        def measure(self, paths):
            raise AssertionError("the cached channel steps were measured again")

    assert channel_steps.preferred_round_to(Unmeasured(runs=10, warmup=1), verbose=False) == table.round_to
    again = tfprune.LatencyTable.measure(small_cnn(), Unmeasured(runs=10, warmup=1), levels=2, verbose=False)
    assert again.round_to == table.round_to and again.probes == table.probes
    pruned = tfprune.prune_to_budget(small_cnn(), tfprune.LatencyBudget(0.6, table=table))
    controller = ChannelController(pruned)
    sizes = np.array([channel_set.size for channel_set in controller.sets])
    kept = controller.kept_groups()
    assert (kept < sizes).any() and all(k % table.round_to == 0 or k == size for k, size in zip(kept, sizes))


def test_pruning_to_a_latency_budget_meets_it_on_the_tables_predictions(table):
    dense = small_cnn()
    pruned = tfprune.prune_to_budget(dense, tfprune.LatencyBudget(0.6, table=table), round_to=8)
    controller = ChannelController(pruned)
    cost = ChannelCost.latency(pruned, controller.sets, table)
    assert cost.total(cost.sizes) == pytest.approx(table.dense)
    assert cost.total(controller.kept_groups()) <= 0.6 * table.dense
    assert controller.kept_groups().min() < cost.sizes.max()  # something was pruned
    small = tfprune.shrink(pruned, verbose=False)
    np.testing.assert_allclose(small.predict(np.ones((2, 16, 16, 3)), verbose=0),
                               pruned.predict(np.ones((2, 16, 16, 3)), verbose=0), atol=1e-4)


def test_a_gradual_run_with_a_latency_budget_saves_the_tables_path_and_resumes(table, tmp_path):
    schedule = tfprune.ConstantSparsity(0.5, 0)
    pruned = tfprune.prune_channels(small_cnn(), schedule, round_to=8, budget=tfprune.LatencyBudget(ms=table.dense * 0.7,
                                                                                                    table=table))
    pruned.save(tmp_path / "run.keras")
    loaded = tfprune.load_model(tmp_path / "run.keras")
    budget = next(w for w in loaded.layers if isinstance(w, tfprune.PruneChannels)).budget
    assert budget.ms == pytest.approx(table.dense * 0.7) and budget.table.path == table.path
    controller = ChannelController(loaded)  # every wrapper read the table: they still share one budget
    controller.prune_to_budget(step=0)
    assert ChannelCost.latency(loaded, controller.sets, budget.table).total(controller.kept_groups()) <= 0.7 * table.dense


def test_bad_latency_budgets_and_tables_say_what_to_do(table, tmp_path):
    with pytest.raises(ValueError, match="needs the latency table to plan with"):
        tfprune.LatencyBudget(0.5)
    with pytest.raises(ValueError, match="a ratio of the dense model's latency .* or ms=..., one of them"):
        tfprune.LatencyBudget(0.5, ms=3.0, table=table)
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ValueError, match="broken.json' is not a tfprune latency table"):
        tfprune.LatencyBudget(0.5, table=tmp_path / "broken.json")
    instructions = tfprune.LatencyTable(table.key, "instructions", 1e6, 1e3, table.layers, table.probes)
    with pytest.raises(ValueError, match="needs a table measured in ms; this one counts instructions"):
        tfprune.LatencyBudget(ms=1.0, table=instructions).target(1e6)
    with pytest.raises(ValueError, match="save the table first"):
        tfprune.LatencyBudget(0.5, table=instructions).get_config()
    with pytest.raises(ValueError, match="is already pruned: measure its latency table on the model before"):
        tfprune.LatencyTable.measure(tfprune.prune_channels(small_cnn(), tfprune.ConstantSparsity(0.5, 0)),
                                     LocalLiteRT())


@pytest.mark.skipif(find_sysroot("auto") is None, reason="no aarch64 sysroot (./.arm64-sysroot) or qemu-aarch64: "
                                                         "make test builds them as root, as make arm-check does")
def test_a_table_counted_on_an_emulated_arm_core_plans_a_budget_in_instructions(tmp_path):
    device = QemuInstructions(find_sysroot("auto"), cpu="cortex-a53")
    table = tfprune.LatencyTable.measure(small_cnn(), device, round_to=8, levels=2, cache=tmp_path / "arm.json",
                                         verbose=False)
    assert table.unit == "instructions" and table.key["device"] == "aarch64-cortex-a53-qemu-instructions"
    values = np.array(table.probes[table.layers["conv2"]["probe"]]["values"])
    assert values[1, 1] > 4 * values[0, 0] > 0  # 32x32 channels against 8x8: far more work
    pruned = tfprune.prune_to_budget(small_cnn(), tfprune.LatencyBudget(0.5, table=table), round_to=8)
    controller = ChannelController(pruned)
    assert ChannelCost.latency(pruned, controller.sets, table).total(controller.kept_groups()) <= 0.5 * table.dense


FAKE_PHONE = """#!{python}
# adb for a phone that is a folder: push copies there; benchmark_model "runs" a file in 1 us per 100 bytes.
import shutil, sys
from pathlib import Path
phone, args = Path("{phone}"), sys.argv[1:]
with open(phone / "adb.log", "a") as log:
    log.write(" ".join(args) + "\\n")
if args[:1] == ["-s"]:
    args = args[2:]
if args[0] == "devices":
    print("List of devices attached\\nPIXEL8\\tdevice")
elif args[0] == "push":
    shutil.copy(args[1], phone / Path(args[2]).name)
elif args[0] == "shell" and any(a.startswith("--graph=") for a in args):
    graph = next(a for a in args if a.startswith("--graph=")).split("=", 1)[1]
    us = (phone / Path(graph).name).stat().st_size / 100
    print(f"INFO: count=50 first={{us:.1f}} curr={{us:.1f}} min={{us:.1f}} max={{us:.1f}} avg={{us:.1f}} std=1 "
          f"median={{us:.1f}}")
    print(f"INFO: Inference timings in us: Init: 1000, First inference: {{us:.1f}}, Warmup (avg): {{us:.1f}}, "
          f"Inference (avg): {{us:.1f}}")
"""


def test_a_table_measured_on_a_phone_over_adb_plans_a_budget(tmp_path, monkeypatch):
    phone, bin_dir = tmp_path / "phone", tmp_path / "bin"
    phone.mkdir(), bin_dir.mkdir()
    (bin_dir / "adb").write_text(FAKE_PHONE.format(python=sys.executable, phone=phone))
    (bin_dir / "adb").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    (tmp_path / "benchmark_model").write_bytes(b"\x7fELF fake")
    device = AndroidDevice(tmp_path / "benchmark_model", serial="PIXEL8", runs=20)
    table = tfprune.LatencyTable.measure(small_cnn(), device, round_to=8, levels=2, cache=tmp_path / "phone.json",
                                         verbose=False)
    assert table.key["device"] == "android-PIXEL8-benchmark_model" and table.unit == "ms"
    values = np.array(table.probes[table.layers["conv2"]["probe"]]["values"])
    assert values[1, 1] > values[0, 1] > values[0, 0] > 0  # more channels, more weights: a bigger file, slower here
    runs = [line for line in (phone / "adb.log").read_text().splitlines() if "--graph=" in line]
    assert len(runs) == 3 + 1 + sum(len(np.ravel(p["values"])) for p in table.probes.values())  # wholes, overhead
    assert all("--num_runs=20" in line and "--enable_op_profiling=false" in line for line in runs)
    pruned = tfprune.prune_to_budget(small_cnn(), tfprune.LatencyBudget(0.7, table=table))
    controller = ChannelController(pruned)
    assert ChannelCost.latency(pruned, controller.sets, table).total(controller.kept_groups()) <= 0.7 * table.dense


def test_model_cost_and_the_shrink_summary_predict_the_latency_of_the_shrunk_model(table, capsys):
    dense = small_cnn()
    assert tfprune.model_cost(dense, latency_table=table).latency == pytest.approx(table.dense)
    pruned = tfprune.prune_to_budget(dense, tfprune.LatencyBudget(0.6, table=table), round_to=8)
    controller = ChannelController(pruned)
    searched = ChannelCost.latency(pruned, controller.sets, table).total(controller.kept_groups())
    small = tfprune.shrink(pruned)
    assert tfprune.model_cost(small, latency_table=table).latency == pytest.approx(searched)  # both paths agree
    summary = capsys.readouterr().out
    assert f"predicted latency {table.dense:.3f} ms -> {searched:.3f} ms" in summary and table.key["device"] in summary
    assert "(predicted)" in str(tfprune.model_cost(small, latency_table=table))
