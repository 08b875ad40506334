"""How faithfully a converted model reproduces Keras: metrics that hold for classifiers and regressors alike.

For every output, over all samples (Keras output `e`, TFLite output `a`, error `a - e`):

- `sqnr_db`: signal-to-quantization-noise ratio, 10·log10(var(e) / mean((a - e)²)). The signal is
  centered, so an output stuck near its mean (a regressor quantized to a constant) scores about 0 dB
  however large its offset.
- `max_rel_error`, `mean_rel_error`: |a - e| relative to the spread (std) of the Keras output.
- `cosine`: cosine similarity of the raw outputs.
- `top1_agreement`: argmax agreement on the samples where it means something: several classes, and
  a Keras margin (best minus second best) above three times the noise (rms of a - e). Near-uniform
  logits, such as an untrained network's, leave no such samples, and then it is None.
- `within_resolution`: for an integer output that varies by less than two of its quantization steps
  (std), every error is within two steps: as close as that format can get (a near-uniform softmax,
  whose INT8 step is fixed at 1/256).

The verdict uses `top1_agreement` against `min_agreement`, and `sqnr_db` against a per-mode floor
(`MIN_SQNR_DB`) by one of these rules (`sqnr_rule`):

- "floor": the SQNR is at or above the floor: passes.
- "within resolution": the SQNR is below the floor, but the output is `within_resolution`: passes.
- "constant": the Keras output is constant, so there is no SQNR (None): not judged by it.
- "below floor": fails.

Example:

>>> metrics = output_metrics(keras_logits, tflite_logits)
>>> metrics["sqnr_db"], metrics["top1_agreement"]
"""

import numpy as np

# Floors for the SQNR of every output, per quantization mode. See README "Export parity" for the
# measurements behind them (benchmarks/export_architectures.py): well-converted models clear them by
# 10 dB or more, while a collapsed output scores near 0 dB.
MIN_SQNR_DB = {None: 40.0, "float16": 30.0, "dynamic": 20.0, "int8": 12.0}
DECIDABLE_MARGIN = 3.0  # margins above this many noise rms count for top-1 agreement
MIN_DECIDABLE = 10  # fewer decidable samples than this: top-1 agreement is not judged


def output_metrics(expected, actual, step=0.0):
    """Parity metrics of one output (arrays with the sample axis first); `step` is its quantization step, if any."""
    e = np.asarray(expected, dtype=np.float64)
    a = np.asarray(actual, dtype=np.float64).reshape(e.shape)
    err = a - e
    noise_power = float(np.mean(err**2))
    signal_power = float(np.var(e))
    spread = float(np.std(e)) or float(np.max(np.abs(e))) or 1.0
    norms = float(np.linalg.norm(e) * np.linalg.norm(a))
    metrics = {
        "shape": list(e.shape[1:]),
        "sqnr_db": _db(signal_power, noise_power),
        "max_rel_error": float(np.max(np.abs(err))) / spread,
        "mean_rel_error": float(np.mean(np.abs(err))) / spread,
        "max_abs_diff": float(np.max(np.abs(err))),
        "cosine": float(np.sum(e * a)) / norms if norms else (1.0 if not np.any(err) else 0.0),
        "top1_agreement": None,
        "top1_samples": 0,
        "output_step": float(step),
        "within_resolution": bool(step) and max(float(np.max(np.abs(err))), float(np.std(e))) <= 2 * step,
    }
    if e.ndim >= 2 and e.shape[-1] >= 2:
        flat_e, flat_a = e.reshape(-1, e.shape[-1]), a.reshape(-1, a.shape[-1])
        top2 = np.sort(flat_e, axis=-1)[:, -2:]
        decidable = (top2[:, 1] - top2[:, 0]) > DECIDABLE_MARGIN * np.sqrt(noise_power)
        metrics["top1_samples"] = int(decidable.sum())
        if decidable.sum() >= MIN_DECIDABLE:
            agree = np.argmax(flat_e, -1) == np.argmax(flat_a, -1)
            metrics["top1_agreement"] = float(np.mean(agree[decidable]))
    return metrics


def _db(signal_power, noise_power):
    if noise_power == 0:
        return float("inf")
    if signal_power == 0:
        return None  # a constant output has no signal to compare: judged by max_abs_diff alone
    return float(10 * np.log10(signal_power / noise_power))


def sqnr_floor(quantize, min_sqnr_db=None):
    """The SQNR floor outputs are judged against: `min_sqnr_db` if given, else the mode's `MIN_SQNR_DB`."""
    return MIN_SQNR_DB[quantize] if min_sqnr_db is None else min_sqnr_db


def sqnr_rule(metrics, floor):
    """Which rule judges one output's SQNR against `floor`: "floor", "within resolution", "constant" or
    "below floor" (the only failing one; see the module docstring)."""
    if metrics["sqnr_db"] is None:
        return "constant"
    if metrics["sqnr_db"] >= floor:
        return "floor"
    return "within resolution" if metrics["within_resolution"] else "below floor"


def failures(outputs, quantize, min_agreement, min_sqnr_db=None):
    """What fails, one line per failing output metric (empty if faithful)."""
    floor = sqnr_floor(quantize, min_sqnr_db)
    lines = []
    for name, m in outputs.items():
        if sqnr_rule(m, floor) == "below floor":
            lines.append(f"{name}: SQNR {m['sqnr_db']:.1f} dB < {floor:g} dB (mean |error| "
                         f"{m['mean_rel_error']:.1%} of the output's spread)")
        if m["top1_agreement"] is not None and m["top1_agreement"] < min_agreement:
            lines.append(f"{name}: top-1 agreement {m['top1_agreement']:.2%} < {min_agreement:.0%} on the "
                         f"{m['top1_samples']} samples with a clear Keras margin")
    return lines


def summary_line(outputs, floor=None):
    """`output_0: SQNR 31.2 dB, top-1 99.8% (412 decidable), max rel err 4.1%` for each output.

    Given the SQNR `floor` the outputs were judged against, an output that passes by a rule other
    than the floor says which, e.g. `output_0: SQNR 11.5 dB, ..., max rel err 38.0%, below the 12 dB
    floor but passed as within resolution (its spread and every error within 2 quantization steps of 0.0039)`.
    """
    parts = []
    for name, m in outputs.items():
        sqnr = "inf" if m["sqnr_db"] == float("inf") else ("n/a" if m["sqnr_db"] is None else f"{m['sqnr_db']:.1f}")
        if m["top1_agreement"] is not None:
            top1 = f", top-1 {m['top1_agreement']:.2%} ({m['top1_samples']} decidable)"
        elif m["shape"] and m["shape"][-1] >= 2:
            top1 = ", top-1 not judged (no clear margins)"
        else:
            top1 = ""  # one value per sample: nothing to rank
        parts.append(f"{name}: SQNR {sqnr} dB, cosine {m['cosine']:.4f}{top1}, max rel err "
                     f"{m['max_rel_error']:.1%}{_rule_note(m, floor)}")
    return "; ".join(parts)


def _rule_note(m, floor):
    """Why an output passed when the SQNR floor did not pass it ("" when it did, or failed, or no floor is given)."""
    rule = None if floor is None else sqnr_rule(m, floor)
    if rule == "within resolution":
        return (f", below the {floor:g} dB floor but passed as within resolution (its spread and every error "
                f"within 2 quantization steps of {m['output_step']:.2g})")
    if rule == "constant":
        return f", constant Keras output: no SQNR to judge (max error {m['max_abs_diff']:.2g})"
    return ""
