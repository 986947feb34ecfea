"""How far whole-network fine-tuning moved each layer from the bundled ImageNet weights, and what that
does to the folded (BN-into-conv) weights int8 quantizes.

    .venv/bin/python benchmarks/train/finetune_bn_drift.py runs/ft_sweep/recipe_s0 \
        > benchmarks/results/train/finetune_bn_drift.md

Per layer: relative change ||after - before|| / ||before|| of the kernel and of each BatchNorm
variable, and the largest folded weight (kernel * gamma / sqrt(moving_variance + eps)) and folded
bias (beta - moving_mean * gamma / sqrt(...)) before and after. int8 weights are per output channel,
but the ReLU6 output step is fixed (6/255), so larger folded weights mean coarser int8 steps relative
to that output.
"""
from __future__ import annotations

import sys

import numpy as np

from cxredge.keras import keras
from cxredge.paths import BUNDLED_WEIGHTS
from cxredge.train.variants import build_model

LAYERS = ("conv1", "conv_dw_1", "conv_pw_1", "conv_dw_2", "conv_pw_2", "conv_pw_7", "conv_pw_13")


def folded(model, name: str) -> tuple[float, float]:
    kernel = model.get_layer(name).weights[0].numpy()
    bn = model.get_layer(f"{name}_bn")
    gamma, beta, mean, var = (w.numpy() for w in bn.weights)
    f = gamma / np.sqrt(var + bn.epsilon)
    k = kernel[..., 0] if "dw" in name else kernel
    return float(np.abs(k * f).max()), float(np.abs(beta - mean * f).max())


def rel(a, b) -> float:
    return float(np.linalg.norm(b - a) / max(np.linalg.norm(a), 1e-12))


def main(run: str) -> None:
    after = keras.models.load_model(f"{run}/finetune/model.keras", compile=False)
    before = build_model("finetune", after.output.shape[-1], 0.75, str(BUNDLED_WEIGHTS), "all", 0.3, "linear")
    print(f"# Weight drift of `{run}` against the bundled ImageNet weights\n")
    print("| layer | kernel change | gamma | beta | moving mean | moving variance | max folded weight before / after "
          "| max folded bias before / after |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name in LAYERS:
        k = rel(before.get_layer(name).weights[0].numpy(), after.get_layer(name).weights[0].numpy())
        bn = [rel(a.numpy(), b.numpy()) for a, b in zip(before.get_layer(f"{name}_bn").weights,
                                                         after.get_layer(f"{name}_bn").weights)]
        (wb, bb), (wa, ba) = folded(before, name), folded(after, name)
        print(f"| {name} | {k:.3f} | " + " | ".join(f"{v:.3f}" for v in bn) +
              f" | {wb:.1f} / {wa:.1f} | {bb:.1f} / {ba:.1f} |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/ft_sweep/recipe_s0")
