"""Where the time goes in a .tflite model: operators cut out of it into models of their own, measured.

The pip `ai-edge-litert` has no op profiler (its Python `Interpreter` and `litert-benchmark` have no
such option), so `profile_tflite` cuts the model's main subgraph into smaller .tflite models, with
the constant tensors (weights, biases, shapes) each operator reads, and measures them all in one
call of a `tfprune.deploy.devices` device, beside the whole model and an empty model (no operator:
the invoke's own cost):

- "in_context" (the default): the model's first k operators, for every k, with every tensor a
  later operator reads as an output, so nothing is dead. Operator k costs the difference between
  the first k+1 and the first k: its inputs come as the model leaves them (in cache), and the
  operators sum to the whole model up to noise;
- "alone": each operator in a model of its own, minus the empty model. An operator alone finds
  its weights and inputs in cache when the model would not, and misses a delegate's fusion of
  neighbours: on MobileNetV2 0.35 (96 px, INT8) the operators alone sum to 73-83% of the whole,
  in context to 98-100%.

`Profile.coverage` is the operators' sum over the whole model's cost, both without the invoke's own.

Operators are grouped back to Keras layers by their output tensor names, which the TFLite
converter builds from the layers' name scopes ("model/block_1_expand_1/convolution;..."): the
first scope below the model's names the layer (Keras 3 appends "_1" to the scopes it traces, so a
layer "conv2d_1" has the scope "conv2d_1_2": that suffix is dropped when every scope in the file
carries one, unless `layer_names` holds only the other reading).
Operators that cannot run cut out are listed as skipped (in context, their cost goes to the next operator).

Example:

```python
dense, small = profile_tflite(["dense.tflite", "small.tflite"])
print(format_profiles([dense, small]))    # per-layer ms side by side, the largest first
plot_profiles([dense, small], "where_the_time_goes.png")
```
"""

import copy
import dataclasses
import re
import tempfile
from pathlib import Path

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as schema

from tfprune.deploy.flatbuffer import is_tflite, op_name
from tfprune.deploy.litert import LiteRTModel

_MAIN_OPERATIONS = ("convolution", "depthwise", "MatMul", "BiasAdd", "einsum", "conv1d")


@dataclasses.dataclass(frozen=True)
class OpCost:
    """One operator of the main subgraph: its position, type, output tensor name, Keras layer and cost."""

    index: int
    op: str
    tensor: str
    layer: str
    cost: float


@dataclasses.dataclass
class Profile:
    """The per-operator costs of one .tflite file on one device.

    Attributes:
        path: the file.
        device, unit: where it was measured and in what ("ms", or "instructions").
        method: "in_context" or "alone" (see `profile_tflite`).
        whole: the whole model's cost; overhead: an empty model's (already subtracted from `ops`).
        ops: an `OpCost` per measured operator, in execution order.
        skipped: (index, op, reason) of operators that could not run cut out.
    """

    path: str
    device: str
    unit: str
    method: str
    whole: float
    overhead: float
    ops: list
    skipped: list

    def by_layer(self):
        """{layer: summed cost of its operators}, in execution order."""
        layers = {}
        for op in self.ops:
            layers[op.layer] = layers.get(op.layer, 0.0) + op.cost
        return layers

    @property
    def coverage(self):
        """The operators' summed cost over the whole model's (both without the invoke's own cost)."""
        return sum(op.cost for op in self.ops) / max(self.whole - self.overhead, 1e-300)


def profile_tflite(paths, device=None, method="in_context", layer_names=None, verbose=False):
    """Measures what every operator of each .tflite file costs; returns a `Profile` per file.

    Args:
        paths: a path or a list of paths (measured in one device call, interleaved on LiteRT).
        device: a `tfprune.deploy.devices` device; default `LocalLiteRT(num_threads=1)`.
        method: "in_context": operator k costs what the model's first k+1 operators cost more than its
            first k (its own inputs as the model leaves them in cache; the operators sum to the whole
            model, up to noise, so one may read slightly negative); "alone": operator k cut out into a
            model of its own, minus an empty model's cost.
        layer_names: the Keras model's layer names (optional): where stripping (or not) the scope's suffix
            gives no layer of these, the other reading is taken.
        verbose: print what is being measured.

    Example:

    >>> profile = profile_tflite("model.tflite")[0]
    >>> max(profile.by_layer().items(), key=lambda item: item[1])
    ('block_16_expand', 0.021)
    """
    from tfprune.deploy.devices import LocalLiteRT

    if method not in ("in_context", "alone"):
        raise ValueError(f"`method` must be 'in_context' or 'alone', got {method!r}.")
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    if not paths:
        raise ValueError("profile_tflite needs at least one .tflite path.")
    device = device or LocalLiteRT(num_threads=1)
    with tempfile.TemporaryDirectory(prefix="tfprune_profile_") as folder:
        files, plans = [], []
        for number, path in enumerate(paths):
            model = _read(path)
            empty = Path(folder) / f"{number}-empty.tflite"
            empty.write_bytes(_pack(_empty_model(model)))
            cut = _prefix if method == "in_context" else _alone
            written, skipped = _cut_operators(model, Path(folder), number, cut)
            plans.append((path, model, [index for index, _ in written], skipped))
            files += [path, empty] + [file for _, file in written]
        if verbose:
            print(f"profile: measuring {len(files)} models on {device.name} (each file whole, empty, and "
                  f"{'the first k operators' if method == 'in_context' else 'each operator alone'})", flush=True)
        measured = iter(m.cost for m in device.measure(files))
    profiles = []
    for path, model, indices, skipped in plans:
        whole, overhead = next(measured), next(measured)
        costs = [next(measured) for _ in indices]
        costs = (list(np.diff([overhead] + costs)) if method == "in_context" else [c - overhead for c in costs])
        naming = _LayerNaming(model, layer_names)
        graph = model.subgraphs[0]
        ops = [OpCost(index, op_name(model.operatorCodes[graph.operators[index].opcodeIndex]),
                      naming.tensor(graph.operators[index]), naming.layer(graph.operators[index]), float(cost))
               for index, cost in zip(indices, costs)]
        profiles.append(Profile(str(path), device.name, device.unit, method, whole, overhead, ops, skipped))
    return profiles


def format_profiles(profiles, top=25):
    """A text table of per-layer costs, one column per profile (the first's largest layers first), and totals.

    `top` limits the rows (None: every layer); the rest is summed in one row.
    """
    layers, order = _side_by_side(profiles)
    unit = profiles[0].unit
    width = max([len("layer")] + [len(name) for name in order[:top]]) if order else 5
    names = [Path(p.path).name for p in profiles]
    lines = [f"{'layer':<{width}} " + " ".join(f"{name[-18:]:>18}" for name in names),
             f"{'':<{width}} " + " ".join(f"{unit + ' (share)':>18}" for _ in names)]

    def row(label, costs):
        cells = [f"{_number(cost, unit)} ({cost / max(p.whole - p.overhead, 1e-300):>4.0%})"
                 for cost, p in zip(costs, profiles)]
        return f"{label:<{width}} " + " ".join(f"{cell:>18}" for cell in cells)

    shown = order if top is None else order[:top]
    lines += [row(name, layers[name]) for name in shown]
    if len(order) > len(shown):
        rest = [sum(layers[name][i] for name in order[len(shown):]) for i in range(len(profiles))]
        lines.append(row(f"({len(order) - len(shown)} more layers)", rest))
    lines.append(row("sum of operators", [sum(op.cost for op in p.ops) for p in profiles]))
    lines.append(f"{'whole model':<{width}} " + " ".join(
        f"{_number(p.whole - p.overhead, unit):>18}" for p in profiles))
    lines.append(f"{'invoke overhead':<{width}} " + " ".join(f"{_number(p.overhead, unit):>18}" for p in profiles))
    for profile in profiles:
        lines.append(f"{Path(profile.path).name}: operators measured {profile.method.replace('_', ' ')} sum to "
                     f"{profile.coverage:.0%} of the whole "
                     f"model ({len(profile.ops)} operators on {profile.device})"
                     + "".join(f"; skipped #{i} {op}: {why}" for i, op, why in profile.skipped))
    return "\n".join(lines)


def plot_profiles(profiles, path, top=20):
    """A horizontal bar chart of the `top` costliest layers, one bar per profile, written to `path` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers, order = _side_by_side(profiles)
    order = order[:top][::-1]
    height = 0.8 / len(profiles)
    figure, axes = plt.subplots(figsize=(8, 0.3 * len(order) * max(1, len(profiles) / 1.5) + 1.5))
    for column, profile in enumerate(profiles):
        axes.barh(np.arange(len(order)) + column * height, [layers[name][column] for name in order], height,
                  label=f"{Path(profile.path).name} ({_number(profile.whole - profile.overhead, profile.unit)} "
                        f"{profile.unit})")
    axes.set_yticks(np.arange(len(order)) + 0.4 - height / 2, order, fontsize=7)
    axes.set_xlabel(f"{profiles[0].unit} per inference, operators measured {profiles[0].method.replace('_', ' ')} "
                    f"({profiles[0].device})")
    axes.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def _side_by_side(profiles):
    """({layer: [cost in each profile]}, the layers ordered by cost in the first profile, then the next...)."""
    layers = {}
    for column, profile in enumerate(profiles):
        for layer, cost in profile.by_layer().items():
            layers.setdefault(layer, [0.0] * len(profiles))[column] = cost
    return layers, sorted(layers, key=lambda name: [-cost for cost in layers[name]])


def _read(path):
    """The model's object tree, its buffers stored outside the flatbuffer (large models) read into it."""
    content = Path(path).read_bytes()
    if not is_tflite(content):
        raise ValueError(f"'{path}' is not a TFLite model (no 'TFL3' identifier): corrupt, truncated or wrong file.")
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(content, 0))
    for buffer in model.buffers:
        if buffer.offset > 1:  # the schema's mark of data after the flatbuffer
            buffer.data = np.frombuffer(content[buffer.offset:buffer.offset + buffer.size], np.uint8)
            buffer.offset = buffer.size = 0
    return model


def _pack(model):
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _is_constant(model, tensor):
    buffer = model.buffers[tensor.buffer] if tensor.buffer < len(model.buffers) else None
    return buffer is not None and buffer.data is not None and len(buffer.data) > 0


def _extract(model, operators, inputs, outputs):
    """A model of the main subgraph's `operators` (indices), with graph `inputs` and `outputs` (tensor indices of
    the main subgraph), holding just the tensors and constant buffers they use; a model with other subgraphs (that
    a WHILE or IF calls) keeps them all, and all its buffers."""
    graph = model.subgraphs[0]
    keeps_all = len(model.subgraphs) > 1
    ops = [graph.operators[index] for index in operators]
    used = dict.fromkeys(list(inputs) + [i for op in ops for i in list(op.inputs) + list(op.outputs)
                                          + list(op.intermediates if op.intermediates is not None else []) if i >= 0])
    position = {tensor: k for k, tensor in enumerate(used)}
    cut = schema.ModelT()
    cut.version, cut.operatorCodes, cut.buffers = model.version, model.operatorCodes, [schema.BufferT()]
    tensors = []
    if keeps_all:
        cut.buffers = model.buffers
    for index in used:
        tensor = copy.copy(graph.tensors[index])
        if keeps_all:
            tensors.append(tensor)
            continue
        tensor.buffer = 0
        if _is_constant(model, graph.tensors[index]):
            cut.buffers.append(model.buffers[graph.tensors[index].buffer])
            tensor.buffer = len(cut.buffers) - 1
        tensors.append(tensor)
    renumbered = []
    for op in ops:
        op = copy.copy(op)
        op.inputs = [position[i] if i >= 0 else -1 for i in op.inputs]
        op.outputs = [position[i] for i in op.outputs]
        if op.intermediates is not None:
            op.intermediates = [position[i] for i in op.intermediates]
        renumbered.append(op)
    subgraph = schema.SubGraphT()
    subgraph.tensors, subgraph.operators = tensors, renumbered
    subgraph.inputs, subgraph.outputs = [position[i] for i in inputs], [position[i] for i in outputs]
    cut.subgraphs = [subgraph] + (model.subgraphs[1:] if keeps_all else [])
    return cut


def _empty_model(model):
    """No operator: the main subgraph's inputs handed straight out, so an invoke does no work but set them."""
    inputs = list(model.subgraphs[0].inputs)
    return _extract(model, [], inputs, inputs)


def _alone(model, index):
    """Operator `index` alone: its non-constant inputs are the model's inputs."""
    graph = model.subgraphs[0]
    operator = graph.operators[index]
    inputs = [i for i in dict.fromkeys(operator.inputs) if i >= 0 and not _is_constant(model, graph.tensors[i])]
    return _extract(model, [index], inputs, list(operator.outputs))


def _prefix(model, count):
    """The first `count` operators, with every tensor they produce that a later operator or the model reads as
    an output (so that no operator is dead)."""
    graph = model.subgraphs[0]
    later = {i for op in graph.operators[count:] for i in op.inputs} | set(graph.outputs)
    produced = [i for op in graph.operators[:count] for i in op.outputs]
    return _extract(model, range(count), list(graph.inputs), [i for i in produced if i in later])


def _cut_operators(model, folder, number, cut=_alone):
    """Writes a model of each operator (`cut(model, index)`): ([(index, path)], [(index, op, reason) skipped])."""
    graph = model.subgraphs[0]
    written, skipped = [], []
    for index, operator in enumerate(graph.operators):
        name = op_name(model.operatorCodes[operator.opcodeIndex])
        content = _pack(cut(model, index + 1 if cut is _prefix else index))
        try:
            LiteRTModel(content, name=f"#{index} {name}").smoke_test()  # one inference: what cannot run fails here
        except (RuntimeError, ValueError) as error:
            counted = "counted with the next operator" if cut is _prefix else "not counted"
            skipped.append((index, name, f"does not run cut out, {counted} ({str(error).splitlines()[0][:120]})"))
            continue
        path = folder / f"{number}-op{index}.tflite"
        path.write_bytes(content)
        written.append((index, path))
    return written, skipped


class _LayerNaming:
    """Keras layer names of operators, read from their tensor names (see the module docstring)."""

    def __init__(self, model, layer_names=None):
        self.graph = model.subgraphs[0]
        self.layer_names = set(layer_names or ())
        scopes = [part.split("/")[1] for op in self.graph.operators for part in self._scoped(op)]
        self.strip_suffix = bool(scopes) and all(re.search(r"_\d+$", scope) for scope in scopes)

    def tensor(self, operator):
        return self._name(operator.outputs[0]) if len(operator.outputs) else ""

    def _name(self, index):
        return self.graph.tensors[index].name.decode(errors="replace")

    def _scoped(self, operator):
        """The "model/layer/operation" parts of the output's name, else of the inputs' (a model output is named
        after the signature, but its weights are not)."""
        for names in ([self.tensor(operator)], [self._name(i) for i in operator.inputs[1:] if i >= 0]):
            parts = [part for name in names for part in name.split(";") if part.count("/") >= 2]
            if parts:
                return parts
        return []

    def layer(self, operator):
        """The layer whose main operation the operator computes (a convolution or matmul before its activation)."""
        parts = self._scoped(operator)
        if not parts:
            return self.tensor(operator) or f"#{self.graph.operators.index(operator)}"
        main = next((part for part in parts if any(name in part.split("/")[-1] for name in _MAIN_OPERATIONS)),
                    parts[0])
        scope = main.split("/")[1]
        stripped = re.sub(r"_\d+$", "", scope)
        name, other = (stripped, scope) if self.strip_suffix else (scope, stripped)
        return other if self.layer_names and name not in self.layer_names and other in self.layer_names else name


def _number(cost, unit):
    return f"{cost / 1e6:.3f}M" if unit == "instructions" else f"{cost:.4f}"
