"""int8-aware head refit: teach the Dense head to read the int8 backbone's features.

Why: in MobileNet v1 most of the int8 error is made in the frozen backbone (the debugger's worst
layers are ReLU6 convs whose fixed [0, 6] range is coarse for small activations), and QAT cannot
change frozen layers either. What can adapt is the part that reads those features: the head.

How (cached, so it takes minutes on a CPU, not hours):
1. PTQ-calibrate the model as usual and convert it to int8.
2. Run that int8 model on train images and keep its dequantized input to `head_fc1` (the 1000-d
   conv_preds logits as the device computes them). Also keep the float model's probabilities on the
   same images (the teacher).
3. Fine-tune a copy of the head (head_fc1 -> head_fc2 -> head_out) on (int8 features -> float
   probabilities): distillation, so the quantized model learns to give the float model's answers.
4. Put the refitted head into a copy of the Keras model and calibrate + convert it with the same
   manifest. The backbone's quantization is unchanged (same weights, same calibration images, so the
   same ranges), which is what the head was fitted to.
The float model (and float32.tflite, the reference) is untouched; only the int8 model's head differs.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from cxredge.edge.runtime.interpreter import dequantize, tensor_spec
from cxredge.errors import CxrError
from cxredge.keras import keras
from cxredge.vocab import HEAD_LAYERS


@dataclass(frozen=True)
class RefitSettings:
    epochs: int = 30
    learning_rate: float = 1e-4
    batch_size: int = 64
    seed: int = 0


def head_input_tensor(interpreter) -> int:
    """Index of the tensor feeding the FULLY_CONNECTED op of head_fc1."""
    names = {d["index"]: d["name"] for d in interpreter.get_tensor_details()}
    for op in interpreter._get_ops_details():  # noqa: SLF001 - the only op-level view LiteRT gives
        if op["op_name"] == "FULLY_CONNECTED" and any(HEAD_LAYERS[0] in names.get(int(o), "") for o in op["outputs"]):
            return int(op["inputs"][0])
    raise CxrError(f"int8 model has no {HEAD_LAYERS[0]} FULLY_CONNECTED op; not a cxredge model")


def int8_features(model_bytes: bytes, x: np.ndarray, progress=None) -> np.ndarray:
    """Dequantized head inputs of the int8 model for uint8 images x: (N, D) float32."""
    from ai_edge_litert.interpreter import Interpreter

    with warnings.catch_warnings():  # LiteRT warns that keeping every tensor is for debugging; it is meant here
        warnings.filterwarnings("ignore", message=".*experimental_preserve_all_tensors", category=UserWarning)
        it = Interpreter(model_content=model_bytes, experimental_preserve_all_tensors=True)
    it.allocate_tensors()
    idx = head_input_tensor(it)
    spec = tensor_spec(next(d for d in it.get_tensor_details() if d["index"] == idx))
    inp = it.get_input_details()[0]["index"]
    out = []
    for img in x:
        it.set_tensor(inp, img[None])
        it.invoke()
        out.append(dequantize(it.get_tensor(idx).reshape(-1), spec))
        if progress:
            progress(1)
    return np.stack(out)


def head_model(model: keras.Model) -> keras.Model:
    """head_fc1 -> head_fc2 -> head_out of `model`, on a feature input (layers shared)."""
    first = model.get_layer(HEAD_LAYERS[0])
    inp = keras.Input(first.input_shape[1:], name="features")
    h = inp
    for name in HEAD_LAYERS:
        h = model.get_layer(name)(h)
    return keras.Model(inp, h, name="head")


def refit_head(model: keras.Model, features: np.ndarray, teacher: np.ndarray,
               settings: RefitSettings) -> tuple[keras.Model, dict]:
    """A copy of `model` whose head was fine-tuned on int8 features -> teacher probabilities."""
    keras.utils.set_random_seed(settings.seed)
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    head = head_model(clone)
    for layer in head.layers:
        layer.trainable = True
    head.compile(keras.optimizers.Adam(settings.learning_rate), loss="categorical_crossentropy")
    before = float(head.evaluate(features, teacher, verbose=0, batch_size=256))
    hist = head.fit(features, teacher, epochs=settings.epochs, batch_size=settings.batch_size,
                    shuffle=True, verbose=0)
    return clone, {"distill_loss_before": before, "distill_loss": [float(v) for v in hist.history["loss"]]}
