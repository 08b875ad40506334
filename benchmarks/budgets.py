"""How close one-shot `prune_to_budget` lands to FLOPs and parameter budgets, and how long its search takes.

keras.applications models built untrained (the search only needs importance scores, here L2 norms):
MobileNetV2 (alpha 0.35 and 1.0, 96x96), ResNet50 (64x64) and EfficientNetB0 (96x96), each pruned
to FlopsBudget 0.5 and 0.25 and ParamsBudget 0.5 with round_to=8, then shrunk and measured with
`tfprune.model_cost`. The time covers scoring, the search and masking.

Run: `python benchmarks/budgets.py`. Writes benchmarks/results/budgets.json.
"""

import json
import os
import time
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402

import tfprune  # noqa: E402
from tfprune.files import atomic_write  # noqa: E402

RESULTS = Path(__file__).parent / "results"
BUDGETS = (tfprune.FlopsBudget(0.5), tfprune.FlopsBudget(0.25), tfprune.ParamsBudget(0.5))
MODELS = {
    "mobilenet_v2_a0.35_96": lambda: keras.applications.MobileNetV2(weights=None, alpha=0.35,
                                                                    input_shape=(96, 96, 3), classes=10),
    "mobilenet_v2_a1.0_96": lambda: keras.applications.MobileNetV2(weights=None, input_shape=(96, 96, 3), classes=10),
    "resnet50_64": lambda: keras.applications.ResNet50(weights=None, input_shape=(64, 64, 3), classes=10),
    "efficientnet_b0_96": lambda: keras.applications.EfficientNetB0(weights=None, input_shape=(96, 96, 3), classes=10),
}


def main():
    warnings.simplefilter("ignore")  # sets that round_to keeps whole, said once per model elsewhere
    rows = []
    for name, build in MODELS.items():
        keras.utils.set_random_seed(0)
        model = build()
        dense = tfprune.model_cost(model)
        for budget in BUDGETS:
            start = time.perf_counter()
            pruned = tfprune.prune_to_budget(model, budget, round_to=8)
            seconds = time.perf_counter() - start
            small = tfprune.model_cost(tfprune.shrink(pruned, verbose=False))
            row = {"model": name, "budget": repr(budget), "flops_ratio": small.flops / dense.flops,
                   "params_ratio": small.params / dense.params, "search_and_mask_seconds": seconds}
            row["achieved"] = row["flops_ratio" if isinstance(budget, tfprune.FlopsBudget) else "params_ratio"]
            print(f"{name:<24} {row['budget']:<18} FLOPs {row['flops_ratio']:.3f} params {row['params_ratio']:.3f} "
                  f"({seconds:.1f} s)", flush=True)
            rows.append(row)
    RESULTS.mkdir(exist_ok=True)
    atomic_write(RESULTS / "budgets.json", (json.dumps({"benchmark": "budgets", "round_to": 8, "rows": rows},
                                                       indent=2) + "\n").encode())


if __name__ == "__main__":
    main()
