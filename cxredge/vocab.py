"""The package's vocabulary: variant, precision, quantize-mode, split, head-layer and delegate names, in their
display order. A leaf module: it imports nothing from cxredge, and every other module takes these names from
here (tests/test_vocab.py checks the converters, the CLI and the parsers agree with it).
"""
from __future__ import annotations

# Variants: which layers of MobileNet train (cxredge/train/variants.py builds them).
STUDY_VARIANTS = ("fc", "one_conv", "two_conv")  # the study's three: `cxredge train --variant all`
FINETUNE = "finetune"
ENSEMBLE = "ensemble"  # not trained: the mean of members' logits (cxredge/train/ensemble.py)
TRAIN_VARIANTS = STUDY_VARIANTS + (FINETUNE,)  # what `cxredge train --variant` builds
VARIANTS = TRAIN_VARIANTS + (ENSEMBLE,)  # every <variant>/ folder of a run, in display order

ALPHAS = (0.25, 0.5, 0.75, 1.0)  # MobileNet width multipliers (`--alpha`)

# Precisions: a .tflite's file stem and its sidecar's "precision" (convert/quantize.PRESETS writes each one).
REFERENCE = "float32"  # the device's reference: agreement and speed-up are measured against it
PRECISIONS = ("float32", "float16", "dynamic", "int8", "qat_int8", "int8_fallback", "int8_refit")
FLOAT_PRECISIONS = ("float32", "float16", "dynamic")  # no calibration images needed

# `cxredge quantize --mode`: each mode writes one precision (float32 is always written).
MODES = ("float32", "int8", "float16", "dynamic", "qat", "refit")
MODE_PRECISION = {"float32": "float32", "int8": "int8", "float16": "float16", "dynamic": "dynamic",
                  "qat": "qat_int8", "refit": "int8_refit"}
CALIBRATED_MODES = ("int8", "qat", "refit")  # need the calibration (representative) images

# Dataset splits, in order; the ones a trained model is evaluated on.
SPLITS = ("train", "val", "test")
EVAL_SPLITS = ("val", "test")

# The MLP head's layer names (train/variants.py builds them, convert/refit.py refits them).
HEAD_LAYERS = ("head_fc1", "head_fc2", "head_out")

# `--delegate` short names -> the shared library LiteRT loads.
DELEGATE_ALIASES = {"edgetpu": "libedgetpu.so.1", "gpu": "libtensorflowlite_gpu_delegate.so"}


def resolve_delegate(name: str) -> str:
    return DELEGATE_ALIASES.get(name, name)


def split_stem(stem: str) -> tuple[str, str] | None:
    """'two_conv_int8_refit' -> ('two_conv', 'int8_refit'): a flat file name <variant>_<precision>.

    The longest precision that ends the stem wins, so 'fc_qat_int8' is fc / qat_int8, not fc_qat / int8.
    None when no known precision ends the stem (or nothing is left for the variant).
    """
    for prec in sorted(PRECISIONS, key=len, reverse=True):
        if stem.endswith("_" + prec) and len(stem) > len(prec) + 1:
            return stem[:-len(prec) - 1], prec
    return None


def order_key(names: tuple[str, ...], name: str) -> int:
    """Display position of `name` in `names`; unknown names after every known one."""
    return names.index(name) if name in names else len(names)
