"""Quantization-aware fine-tuning (tensorflow-model-optimization) of a trained variant.

Design (honest and CPU-sized):
- The Rescaling layer stays outside the quantize-annotated sub-model (tfmot does not support it):
  outer model = Input -> scale_to_pm1 -> quantize_model(the rest of the network).
- Only the variant's trainable layers train. tfmot's QuantizeWrapper makes every wrapped kernel
  trainable; we set each wrapper back to the original layer's `trainable` flag, so frozen layers stay
  frozen (a test checks a frozen kernel is bit-identical after QAT). BatchNorm layers run in inference
  mode (frozen), as in transfer learning.
- Targets are the float model's own probabilities (distillation): the goal of QAT here is to make the
  int8 model give the float model's answers, which is what agreement measures.
- Data: a stratified, seeded subset of the train split (default 400 images), `epochs` passes (default
  2), Adam at 1e-4 (a tenth of the head's training rate). Full-network forward passes with fake-quant are ~10x the
  cost of cached-feature training, so the subset keeps QAT in minutes on 2 CPU cores.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cxredge.errors import CxrError
from cxredge.keras import keras, tf

RESCALING = "scale_to_pm1"


@dataclass(frozen=True)
class QatSettings:
    epochs: int = 2
    images: int = 400
    learning_rate: float = 1e-4
    batch_size: int = 16
    seed: int = 0


def _tfmot():
    try:
        import tensorflow_model_optimization as tfmot
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise CxrError(f"--mode qat needs tensorflow-model-optimization: pip install 'cxredge[train]' "
                       f"({exc})") from None
    return tfmot


def split_rescaling(model: keras.Model) -> tuple[keras.layers.Layer, keras.Model]:
    """(the Rescaling layer, the rest of the network as a model taking [-1, 1] pixels)."""
    names = [layer.name for layer in model.layers]
    if len(names) < 3 or names[1] != RESCALING:
        raise CxrError(f"model has no '{RESCALING}' layer after its input; not a cxredge model")
    inp = keras.Input(model.input_shape[1:], name="pm1_pixels")
    x = inp
    for layer in model.layers[2:]:
        x = layer(x)
    return model.layers[1], keras.Model(inp, x, name="body")


def build_qat_model(model: keras.Model) -> keras.Model:
    """Input -> Rescaling -> quantize_model(body), with the original trainable flags restored."""
    tfmot = _tfmot()
    rescale, body = split_rescaling(model)
    trainable = {layer.name: layer.trainable for layer in model.layers}
    qbody = tfmot.quantization.keras.quantize_model(body)
    for layer in qbody.layers:
        inner = getattr(layer, "layer", layer)
        is_bn = isinstance(inner, keras.layers.BatchNormalization)
        keep = bool(trainable.get(inner.name, False)) and not is_bn
        layer.trainable = keep
        if not keep:
            _freeze_wrapped(layer, inner)
    inp = keras.Input(model.input_shape[1:], name="pixels")
    rescale_copy = keras.layers.Rescaling(rescale.scale, offset=rescale.offset, name=RESCALING)
    out = qbody(rescale_copy(inp))
    return keras.Model(inp, out, name=f"{model.name}_qat")


def _freeze_wrapped(wrapper: keras.layers.Layer, inner: keras.layers.Layer) -> None:
    """QuantizeWrapper copies the wrapped layer's kernel into its own trainable list at build time,
    so `trainable = False` alone does not freeze it: move them to the wrapper's non-trainable list.
    Quantizer ranges (non-trainable variables updated by assignment) are untouched."""
    if wrapper is inner or not hasattr(wrapper, "_trainable_weights"):
        return
    # mutate in place: assigning a list of variables to a Keras layer attribute re-tracks them
    # by their own `trainable` flag, which would put them straight back in the trainable list.
    moved = list(wrapper._trainable_weights)  # noqa: SLF001
    del wrapper._trainable_weights[:]  # noqa: SLF001 - nothing of a frozen layer trains
    wrapper._non_trainable_weights.extend(moved)  # noqa: SLF001


def fine_tune(model: keras.Model, x: np.ndarray, settings: QatSettings, progress=None) -> tuple[keras.Model, dict]:
    """QAT-fine-tune on images `x` with the float model's probabilities as targets."""
    keras.utils.set_random_seed(settings.seed)
    targets = model.predict(x.astype(np.float32), batch_size=16, verbose=0)
    qat = build_qat_model(model)
    qat.compile(keras.optimizers.Adam(settings.learning_rate), loss="categorical_crossentropy")
    callbacks = [_EpochProgress(progress)] if progress else []
    hist = qat.fit(x.astype(np.float32), targets, epochs=settings.epochs, batch_size=settings.batch_size,
                   shuffle=True, verbose=0, callbacks=callbacks)
    n_trainable = sum(int(w.shape.num_elements()) for w in qat.trainable_weights)
    return qat, {"loss": [float(v) for v in hist.history["loss"]], "trainable_params": n_trainable}


class _EpochProgress(keras.callbacks.Callback):
    def __init__(self, progress):
        super().__init__()
        self._progress = progress

    def on_epoch_end(self, epoch, logs=None):
        self._progress(1)


def quantize_scope():
    """Custom objects to load a saved QAT model (not needed for conversion)."""
    return _tfmot().quantization.keras.quantize_scope()


__all__ = ["QatSettings", "build_qat_model", "fine_tune", "split_rescaling", "quantize_scope", "tf"]
