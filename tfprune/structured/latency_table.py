"""Latency tables: what each prunable layer of a model costs on a device, as a function of its channels.

A table is measured, not modelled. Every layer whose channels pruning can remove (a Conv2D, a
Dense, a depthwise convolution...) gets *probes*: that layer alone, at the input shape it has in
the model, with its channel counts set by its own shrink rule, converted as the model is (INT8 by
default) and measured on a device (`tfprune.deploy.devices`: this machine, a phone, an emulated
ARM core), over a grid of channel counts (`levels` per role, multiples of `round_to`). The
interpreter's own cost per invoke, measured on a trivial probe, is subtracted. Between grid points
a layer's cost is interpolated linearly in each of its roles' channel counts. What the probes do
not cover (additions, padding, pooling, activations, the invoke itself) is the *rest*: the whole
dense model's measured cost minus its layers' costs. Part of it shrinks with the activations:
two uniformly pruned copies of the model (30% and 60% of every set's channels) are measured whole
beside the dense model, and `rest_per_element` (what the rest costs per element of the layers'
outputs) is fitted to them by least squares. (Fitting also to copies at random channel counts, or
a scale on the probes' changes, did worse in trials: the LatencyBudget(0.5) of MobileNetV2 0.35
measured 0.58-0.70 of dense instead of 0.53.)

Identical layers at identical shapes share their probes. A table is keyed by the model's layers
and shapes, the device, its settings and the runtime version, and cached as JSON: a second
`measure` with the same key reads it, and a table of another model or device is refused.

Example:

```python
table = LatencyTable.measure(model, LocalLiteRT(num_threads=1))   # round_to="auto": the kernels' channel steps
pruned = tfprune.prune_to_budget(model, tfprune.LatencyBudget(0.5, table=table))  # keeps the table's multiples
```
"""

import itertools
import json
import math
import tempfile
import warnings
from pathlib import Path

import keras
import numpy as np

from tfprune.apply.wrapper import pruning_wrappers
from tfprune.files import atomic_write, cache_folder, digest
from tfprune.layers.table import rule_by_class
from tfprune.structured.analysis import ChannelAnalysis
from tfprune.schedules import ConstantSparsity
from tfprune.structured.channel_cost import role_owners
from tfprune.structured.channel_steps import preferred_round_to
from tfprune.structured.controller import ChannelController
from tfprune.structured.prune import prune_channels
from tfprune.structured.shrink import shrink
from tfprune.structured.cost import traced_calls

FORMAT = 4  # of the table files: a table of another format is measured again
CALIBRATION = (0.3, 0.6)  # uniform sparsities of the pruned copies the table is fitted to


class LatencyTable:
    """Measured per-layer costs of one model on one device; see the module docstring.

    Attributes:
        key: what it was measured for (model fingerprint, device, settings, versions).
        unit: the device's unit ("ms", or "instructions").
        dense: the whole dense model's measured cost.
        overhead: the cost of invoking a trivial model, already subtracted from every probe.
        rest_per_element: what the rest costs per element of the counted layers' outputs.
        elements: those elements in the dense model.
        calibration: the pruned copies' measured and predicted costs.
        layers: {layer name: {"probe": probe id, "roles": [role names], "channels": [full counts]}}.
        probes: {probe id: {"grid": [[channel counts] per role], "values": costs over the grid, "spread": the
            median relative spread of its measurements}}; `noise` is their median.
        path: the file it was read from or saved to, if any.
        round_to: the multiples its grid holds (None: every count); `key["round_to"]` is what was asked
            ("auto", a number or None).
    """

    def __init__(self, key, unit, dense, overhead, layers, probes, rest_per_element=0.0, calibration=(), elements=0,
                 round_to=None, path=None):
        self.key, self.unit, self.dense, self.overhead = key, unit, float(dense), float(overhead)
        self.elements = int(elements)
        self.layers, self.probes, self.path = layers, probes, path
        self.rest_per_element = float(rest_per_element)
        self.calibration = list(calibration)
        self.round_to = round_to

    @classmethod
    def measure(cls, model, device, quantize="int8", round_to="auto", levels=4, max_sparsity=0.9, ignored_layers=None,
                cache=True, verbose=True):
        """Measures (or reads from the cache) the latency table of `model` on `device`.

        Args:
            model: a built Sequential or Functional model, before pruning.
            device: a `tfprune.deploy.devices` device, e.g. `LocalLiteRT(num_threads=1)`.
            quantize: how probes and model are converted: "int8", "float16" or None (float32).
            round_to: grid counts are multiples of it, as pruning will keep; "auto" measures the multiples
                the device's kernels prefer (`channel_steps.preferred_round_to`, cached per device); None
                allows every count. Pruning to a `LatencyBudget` on the table keeps these multiples unless
                given another `round_to`.
            levels: grid points per role, from the fewest channels `max_sparsity` leaves to all.
            ignored_layers: layers whose channels stay (as given to pruning).
            cache: True reads and writes the table in ~/.cache/tfprune/latency ($TFPRUNE_CACHE);
                a path uses that file; False measures every time.
            verbose: print progress.
        """
        if quantize not in (None, "float16", "int8"):
            raise ValueError(f"`quantize` must be None, 'float16' or 'int8', got {quantize!r}.")
        if levels < 2:
            raise ValueError(f"`levels` must be at least 2 (the fewest and all channels), got {levels}.")
        if pruning_wrappers(model):
            raise ValueError(f"Model '{model.name}' is already pruned: measure its latency table on the model before "
                             "pruning (the table serves its pruned copies: they have the same layers).")
        from tfprune.deploy.versions import versions  # deployment is loaded on first use, as `import tfprune` promises

        calls, owners = _prunable_calls(model, ignored_layers)
        key = {"format": FORMAT, "model": fingerprint(model), "channels": fingerprint(model, channels=True),
               "device": device.name, "settings": device.settings,
               "quantize": quantize, "round_to": round_to, "levels": levels, "max_sparsity": max_sparsity,
               "ignored_layers": sorted(layer if isinstance(layer, str) else layer.name for layer in ignored_layers or ()),
               "ai_edge_litert": versions()["ai_edge_litert"]}
        path = None if cache is False else Path(cache) if cache is not True else cache_folder("latency") / f"{digest(key)}.json"
        if path is not None and path.is_file():
            try:
                table = cls.load(path)
            except ValueError:  # an unreadable cache is measured again
                table = None
            if table is not None and table.key == key:
                if verbose:
                    print(f"latency table: read {path}", flush=True)
                return table
        if round_to == "auto":
            round_to = preferred_round_to(device, quantize, cache=cache is not False, verbose=verbose)
        layers, probes = {}, {}
        for call, roles in calls:
            channels = [owners[(id(call.layer), role)][0] for role in roles]
            grid = [_grid(size, round_to, levels, max_sparsity) for size in channels]
            specs = {counts: _probe(call, dict(zip(roles, counts))) for counts in itertools.product(*grid)}
            probe_id = digest([specs[tuple(channels)], grid])
            layers[call.layer.name] = {"probe": probe_id, "roles": list(roles), "channels": channels}
            probes.setdefault(probe_id, {"grid": grid, "specs": specs})
        settings = {"round_to": round_to, "max_sparsity": max_sparsity, "ignored_layers": ignored_layers}
        table = cls._measured(model, device, quantize, key, layers, probes, settings, verbose)
        table.round_to = round_to
        if path is not None:
            table.save(path)
        return table

    @classmethod
    def _measured(cls, model, device, quantize, key, layers, probes, settings, verbose):
        from tfprune.deploy.probes import convert_probes

        with tempfile.TemporaryDirectory(prefix="tfprune_latency_") as folder:
            folder = Path(folder)
            specs = [{"layer": keras.saving.serialize_keras_object(keras.layers.ReLU()), "input_shape": [1, 8],
                      "path": str(folder / "overhead.tflite")}]
            for probe_id, probe in probes.items():
                for counts, spec in probe["specs"].items():
                    specs.append({**spec, "path": str(folder / f"{probe_id}-{'-'.join(map(str, counts))}.tflite")})
            if verbose:
                print(f"latency table: converting {len(specs)} probes of {len(layers)} layers ({quantize or 'float32'}), "
                      f"the model and {len(CALIBRATION)} pruned copies", flush=True)
            convert_probes(specs, quantize)
            _export(model, folder / "model.tflite", quantize)
            calibration = _pruned_copies(model, settings)
            for index, small in enumerate(calibration):
                _export(small, folder / f"calibration{index}.tflite", quantize)
            if verbose:
                print(f"latency table: measuring them on {device.name}", flush=True)
            wholes = [folder / "model.tflite"] + [folder / f"calibration{i}.tflite" for i in range(len(calibration))]
            measured = device.measure(wholes + [spec["path"] for spec in specs])
        overhead = measured[len(wholes)].cost
        costs = iter(measured[len(wholes) + 1:])
        for probe in probes.values():
            found = [next(costs) for _ in probe.pop("specs")]
            values = np.array([max(0.0, m.cost - overhead) for m in found])
            probe["values"] = values.reshape([len(g) for g in probe["grid"]]).tolist()
            probe["spread"] = float(np.median([m.spread for m in found]))
        table = cls(key, device.unit, measured[0].cost, overhead, layers, probes,
                    elements=_elements(traced_calls(model)))
        table._calibrate(calibration, [m.cost for m in measured[1:len(wholes)]])
        if verbose:
            print(f"latency table: {sum(np.size(p['values']) for p in probes.values())} probes measured, their "
                  f"spread (p90 - median) / median {table.noise:.1%} (median); the dense model "
                  f"{measured[0].spread:.1%}", flush=True)
        return table

    @property
    def noise(self):
        """The median over probes of their measurements' relative spread (0 for exact counts), or None for a table
        saved before spreads were kept."""
        spreads = [probe["spread"] for probe in self.probes.values() if "spread" in probe]
        return float(np.median(spreads)) if spreads else None

    def _calibrate(self, copies, measured):
        """Fits `rest_per_element` to the whole-model costs of pruned copies: what the probes leave out (element-wise
        work) shrinks with the layers' outputs, by this much per element (least squares, at least 0)."""
        probes, elements = np.array([self._changes(copy) for copy in copies]).T
        residuals = np.array(measured) - self.dense - probes
        self.rest_per_element = max(0.0, float(residuals @ elements / max(elements @ elements, 1e-300)))
        self.calibration = [{"sparsity": sparsity, "measured": m, "predicted": self.predict(copy)}
                            for sparsity, copy, m in zip(CALIBRATION, copies, measured)]

    def layer_cost(self, name, channels):
        """The cost of layer `name` keeping `channels` (one count per role of `layers[name]["roles"]`)."""
        probe = self.probes[self.layers[name]["probe"]]
        return _interpolate(probe["grid"], np.asarray(probe["values"], dtype=np.float64), channels)

    def predict(self, model):
        """The predicted cost of `model`: the model this table was measured for, or a shrunk copy of it.

        Example:

        >>> table.predict(tfprune.shrink(pruned)) / table.dense   # the latency ratio to dense
        """
        self.check_model(model)
        probes, elements = self._changes(model)
        return self.dense + probes + self.rest_per_element * elements

    def _changes(self, model):
        """How much the probed layers' costs and the layers' output elements change from the dense model's."""
        calls = traced_calls(model)
        change = 0.0
        for call in calls:
            entry = self.layers.get(call.layer.name)
            if entry:
                sizes = {axis.role: axis.size for axis in rule_by_class(call.layer)[0].axes(call.layer)}
                counts = [sizes[role] for role in entry["roles"]]
                if any(count > full for count, full in zip(counts, entry["channels"])):
                    raise ValueError(f"Layer '{call.layer.name}' has {counts} channels, more than the {entry['channels']} "
                                     f"this latency table was measured for{f' ({self.path})' if self.path else ''}: "
                                     "it serves its model and the model's pruned copies; measure one for this model.")
                change += self.layer_cost(call.layer.name, counts) - self.layer_cost(call.layer.name, entry["channels"])
        return change, _elements(calls) - self.elements

    def check_model(self, model):
        """Raises ValueError unless `model` has the layers and spatial shapes the table was measured on."""
        if fingerprint(model) != self.key["model"]:
            raise ValueError(f"This latency table was measured for another model (or other input shapes) than "
                             f"'{model.name}'{f' ({self.path})' if self.path else ''}: measure one for it with "
                             "LatencyTable.measure(model, device).")

    def save(self, path):
        content = {"key": self.key, "unit": self.unit, "dense": self.dense, "overhead": self.overhead,
                   "rest_per_element": self.rest_per_element, "calibration": self.calibration,
                   "elements": self.elements, "round_to": self.round_to,
                   "layers": self.layers, "probes": self.probes}
        atomic_write(Path(path), (json.dumps(content, indent=1) + "\n").encode())
        self.path = str(path)

    @classmethod
    def load(cls, path):
        try:
            content = json.loads(Path(path).read_text())
            return cls(content["key"], content["unit"], content["dense"], content["overhead"], content["layers"],
                       content["probes"], content["rest_per_element"], content["calibration"], content["elements"],
                       content.get("round_to", content["key"].get("round_to")), path=str(path))  # format 3: in the key
        except (OSError, ValueError, KeyError) as error:
            raise ValueError(f"'{path}' is not a tfprune latency table ({type(error).__name__}: {error}); measure "
                             "it again with LatencyTable.measure.") from error


def fingerprint(model, channels=False):
    """A digest of the layers whose FLOPs count, with their classes and spatial shapes: equal for a model, its
    channel-pruned (wrapped) copy and its shrunk copy; with `channels`, their channel counts too (the cache key)."""
    end = None if channels else -1
    return digest([(c.layer.name, type(c.layer).__name__, list(c.input.shape[1:end]), list(c.output.shape[1:end]))
                    for c in traced_calls(model)])


def _elements(calls):
    """Elements of the counted layers' outputs: what the element-wise rest of a model scales with."""
    return sum(math.prod(call.output.shape[1:]) for call in calls)


def _prunable_calls(model, ignored_layers):
    """[(traced call, owned roles)] of the counted layers whose channels pruning can change, and the owners."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        analysis = ChannelAnalysis(model, ignored_layers, assume_pruned=True)
    owners = role_owners(analysis.channel_sets(analysis.removable_roots()))
    calls, seen = [], set()
    for call in traced_calls(model):
        roles = [role for (layer_id, role) in owners if layer_id == id(call.layer)]
        if roles and id(call.layer) not in seen:
            seen.add(id(call.layer))
            calls.append((call, sorted(roles)))
    return calls, owners


def _grid(size, round_to, levels, max_sparsity):
    """`levels` channel counts from the fewest `max_sparsity` leaves to all, multiples of `round_to`."""
    fewest = max(1, size - int(max_sparsity * size))
    allowed = [c for c in range(fewest, size + 1) if not round_to or c % round_to == 0 or c == size]
    picks = np.linspace(0, len(allowed) - 1, min(levels, len(allowed))).round().astype(int)
    return sorted({allowed[i] for i in picks})


def _probe(call, counts):
    """The spec of a probe of `call.layer` keeping the first `counts[role]` channels of each owned role."""
    layer = call.layer
    rule = rule_by_class(layer)[0]
    sizes = {axis.role: axis.size for axis in rule.axes(layer)}
    keep = {role: np.arange(size) < counts.get(role, size) for role, size in sizes.items()}
    shrunk = rule.shrink(layer, keep)
    config = layer.get_config() if shrunk is None else shrunk[0]
    config = {**config, "name": "probe"}
    shape = list(call.input.shape)
    shape[-1] = counts.get("input", shape[-1])
    return {"layer": {"module": type(layer).__module__, "class_name": type(layer).__name__, "config": config,
                      "registered_name": keras.saving.get_registered_name(type(layer))},
            "input_shape": [1, *shape[1:]]}


def _interpolate(grid, values, point):
    """Multilinear interpolation of `values` (one axis per role) on `grid` at `point`, clamped to the grid."""
    if not grid:
        return float(values)
    axis, rest = np.asarray(grid[0], dtype=np.float64), grid[1:]
    x = min(max(float(point[0]), axis[0]), axis[-1])
    upper = int(np.searchsorted(axis, x))
    if upper == 0 or axis[upper] == x:
        return _interpolate(rest, values[upper], point[1:])
    lower = upper - 1
    weight = (x - axis[lower]) / (axis[upper] - axis[lower])
    return ((1 - weight) * _interpolate(rest, values[lower], point[1:])
            + weight * _interpolate(rest, values[upper], point[1:]))


def _pruned_copies(model, settings):
    """Shrunk copies of `model`, every set pruned to each of the `CALIBRATION` sparsities, that the rest is fitted to
    (the model itself where round_to keeps every channel)."""
    copies = []
    for sparsity in CALIBRATION:
        with warnings.catch_warnings():  # sets that round_to keeps whole are the user's to hear of when pruning
            warnings.filterwarnings("ignore", message="prune_channels will prune none")
            pruned = prune_channels(model, ConstantSparsity(sparsity, 0), **settings)
        controller = ChannelController(pruned)
        controller.prune_to(sparsity, step=0)
        pruned_any = controller.kept_groups().sum() < sum(s.size for s in controller.sets)
        copies.append(shrink(pruned, verbose=False) if pruned_any else model)
    return copies


def _export(model, path, quantize):
    from tfprune.deploy.export import export_tflite

    samples = np.random.default_rng(0).uniform(-1, 1, (16, *model.input_shape[1:])).astype("float32")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an untrained model on random inputs: parity is not the point here
        export_tflite(model, path, quantize=quantize, representative_data=samples if quantize == "int8" else None,
                      parity_data=samples[:4], on_parity_failure="warn", arm_sysroot=None)


