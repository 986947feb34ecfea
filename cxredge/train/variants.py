"""The model contract (this docstring; tests/test_train_variants.py pins it): MobileNet cut at the conv_preds
logits + a Dense head.

Input: raw pixels 0..255, float32, (224, 224, 3); the first layer scales them to [-1, 1].
Output: softmax over C classes. Which layers train is the variant:
  fc        Dense 1024 / 512 / C only (the whole MobileNet frozen)
  one_conv  + conv_preds (the 1x1 conv that gives the 1000 ImageNet logits)
  two_conv  + conv_pw_13 and its BatchNorm
  finetune  the whole network by default (or + the last K depthwise-separable blocks); its default
            head is linear: Dropout + Dense(C) on the same logits (train/finetune.py)
"""
from __future__ import annotations

from pathlib import Path

from cxredge.errors import CxrError
from cxredge.keras import keras
from cxredge.paths import BUNDLED_WEIGHTS, BUNDLED_WEIGHTS_ALPHA
from cxredge.vocab import ALPHAS, HEAD_LAYERS, TRAIN_VARIANTS

VARIANT_TRAINABLE = {
    "fc": (),
    "one_conv": ("conv_preds",),
    "two_conv": ("conv_preds", "conv_pw_13", "conv_pw_13_bn"),
}
LOGITS_LAYER = "reshape_2"  # the 1000-d conv_preds logits, after their Reshape, before the softmax
INPUT_SIZE = 224


def resolve_weights(weights: str, alpha: float) -> str | None:
    """'bundled' | 'imagenet' | 'none' | PATH -> what keras.applications.MobileNet takes."""
    if weights == "bundled":
        if alpha != BUNDLED_WEIGHTS_ALPHA:
            raise CxrError(f"--weights bundled: the bundled file is alpha {BUNDLED_WEIGHTS_ALPHA}, received "
                           f"--alpha {alpha}; use --weights imagenet (download), PATH or none")
        return str(BUNDLED_WEIGHTS)
    if weights == "imagenet":
        return "imagenet"
    if weights == "none":
        return None
    path = Path(weights)
    if not path.is_file():
        raise CxrError(f"--weights {weights}: file not found (expected bundled, imagenet, none or a .h5 path)")
    return str(path)


def build_model(variant: str, num_classes: int, alpha: float = 0.75, weights: str | None = None,
                unfreeze_blocks: int | str = 2, dropout: float = 0.0, head: str = "mlp") -> keras.Model:
    """Build the full model for a variant, with the right layers trainable. head "mlp" is the
    contract's Dense 1024/512/C; "linear" (finetune's default) is Dropout + Dense(C) on the logits."""
    if variant not in TRAIN_VARIANTS:
        raise CxrError(f"--variant {variant}: expected one of {', '.join(TRAIN_VARIANTS)}")
    if alpha not in ALPHAS:
        raise CxrError(f"--alpha {alpha}: expected one of {', '.join(map(str, ALPHAS))}")
    if num_classes < 2:
        raise CxrError(f"need at least 2 classes, received {num_classes}")
    inp = keras.Input((INPUT_SIZE, INPUT_SIZE, 3), name="pixels")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="scale_to_pm1")(inp)
    try:
        base = keras.applications.MobileNet(input_tensor=x, alpha=alpha, include_top=True,
                                            weights=weights, classes=1000)
    except (ValueError, OSError) as exc:
        raise CxrError(f"--weights {weights}: could not load into MobileNet alpha {alpha} with top ({exc})") from None
    x = base.get_layer(LOGITS_LAYER).output
    if head not in ("mlp", "linear"):
        raise CxrError(f"--finetune-head {head}: expected linear or mlp")
    if head == "mlp":
        x = keras.layers.Dense(1024, activation="relu", name=HEAD_LAYERS[0])(x)
        if dropout:
            x = keras.layers.Dropout(dropout, name="head_drop1")(x)
        x = keras.layers.Dense(512, activation="relu", name=HEAD_LAYERS[1])(x)
    if dropout:
        x = keras.layers.Dropout(dropout, name="head_drop2")(x)
    out = keras.layers.Dense(num_classes, activation="softmax", name=HEAD_LAYERS[2])(x)
    model = keras.Model(inp, out, name=f"cxredge_{variant}")
    set_trainable(model, variant, unfreeze_blocks)
    return model


def trainable_names(variant: str, unfreeze_blocks: int | str = 2) -> set[str]:
    if variant == "finetune" and unfreeze_blocks == "all":
        return {"conv1", "conv1_bn"} | trainable_names("finetune", 13)
    if variant == "finetune":
        names = set(VARIANT_TRAINABLE["two_conv"])
        for b in range(14 - unfreeze_blocks, 14):
            names |= {f"conv_dw_{b}", f"conv_dw_{b}_bn", f"conv_pw_{b}", f"conv_pw_{b}_bn"}
        return names
    return set(VARIANT_TRAINABLE[variant])


def set_trainable(model: keras.Model, variant: str, unfreeze_blocks: int | str = 2) -> None:
    if variant == "finetune" and unfreeze_blocks != "all" and not (
            isinstance(unfreeze_blocks, int) and 1 <= unfreeze_blocks <= 13):
        raise CxrError(f"--unfreeze-blocks {unfreeze_blocks}: expected all or 1..13")
    names = trainable_names(variant, unfreeze_blocks) | set(HEAD_LAYERS)
    for layer in model.layers:
        layer.trainable = layer.name in names


def count_params(model: keras.Model) -> tuple[int, int]:
    """(total, trainable) parameter counts."""
    trainable = sum(int(w.shape.num_elements()) for w in model.trainable_weights)
    return int(model.count_params()), trainable


def first_trainable_index(model: keras.Model) -> int:
    """Index of the first layer that trains: everything before it can be computed once and cached."""
    for i, layer in enumerate(model.layers):
        if layer.trainable and layer.weights:
            return i
    raise CxrError("model has no trainable layer")
