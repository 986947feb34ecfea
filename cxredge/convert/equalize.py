"""ReLU6-safe channel equalization of the first layers: a copy of the model for the int8 converter only.

Why (benchmarks/results/quantize/int8_error_sources.md): after bias correction, most of the int8 error
is made by the first layers' activations. Every ReLU6 output is stored as one uint8 range per tensor,
[0, 6] (step 6/255 = 0.0235, since some channel always reaches 6), while many of its channels never
exceed 0.5-3 on chest X-rays: those channels are stored with 10-100 levels, and the network downstream
is sensitive to detail well below one gray level of the input.

How (Nagel et al. 2019, "Data-Free Quantization Through Weight Equalization and Bias Correction",
section 4.1, made safe for ReLU6): for each of the first `pairs` producer -> consumer pairs (a Conv2D or
DepthwiseConv2D with its BatchNormalization and ReLU6, then, past any zero padding, the Conv2D or
DepthwiseConv2D that reads it), output channel c of the producer is multiplied by
s_c = clip(6 / (margin x max_c), 1, max_scale), where max_c is the channel's largest ReLU6 output on the
calibration images, and the consumer's kernel is divided by s_c along its input channels. Since
ReLU6(s z) = s ReLU6(z) whenever s z <= 6, the copy computes the model's function wherever a channel
stays within its calibration maximum (on chest_xray_4class the float outputs of copy and original
differ by at most 2e-5 on 100 val images), and the channel is quantized s_c times finer. Zero padding
commutes with the scale.

The model and its float32.tflite (the reference on the device) are untouched: the copy is what the int8
converter calibrates and quantizes and what bias correction aims at. Same model + same images -> same
copy. The graph, op set and speed of the int8 model do not change; only weights, biases and ranges do.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from cxredge.errors import CxrError

RELU6 = 6.0
DEFAULT_PAIRS = 3


@dataclass(frozen=True)
class EqualizeSettings:
    pairs: int = DEFAULT_PAIRS  # producer -> consumer pairs from the input (conv1 -> conv_dw_1 -> conv_pw_1 -> ...)
    margin: float = 1.0       # channel maximum x margin is mapped to 6
    max_scale: float = 16.0   # largest channel scale


@dataclass(frozen=True)
class Pair:
    member: tuple[str, ...]  # () for the model itself, else the path of sub-model names (ensembles)
    producer: str    # the layer whose output channels are scaled (BatchNormalization, or the conv itself)
    relu: str        # the ReLU6 in between (its calibration maxima choose the scales)
    consumer: str    # Conv2D / DepthwiseConv2D whose kernel takes the inverse scale


def _keras():
    from cxredge.keras import keras  # TensorFlow: only when a model is equalized, not when the CLI starts

    return keras


def _convs() -> tuple:
    keras = _keras()
    return keras.layers.Conv2D, keras.layers.DepthwiseConv2D


def _is_relu6(layer) -> bool:
    keras = _keras()
    if not isinstance(layer, keras.layers.ReLU):
        return False
    cfg = layer.get_config()
    return (cfg.get("max_value") is not None and float(np.asarray(cfg["max_value"])) == RELU6
            and float(np.asarray(cfg.get("negative_slope", 0.0))) == 0.0
            and float(np.asarray(cfg.get("threshold", 0.0))) == 0.0)


def is_chain(model) -> bool:
    """Every layer after the first two reads the one before it, and only it."""
    layers = model.layers
    return all(not isinstance(la.input, (list, tuple)) and layers[i].input is layers[i - 1].output
               for i, la in enumerate(layers) if i >= 2)


def chains(model, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], object]]:
    """The chain networks that read the pixels: the model itself and, recursively, every sub-model
    called on its input (an ensemble's members, a member's feature extractor), by path of names."""
    keras = _keras()
    found = [(path, model)] if is_chain(model) else []
    for la in model.layers:
        if isinstance(la, keras.Model) and _reads_input(la, model):
            found += chains(la, path + (la.name,))
    return found


def _reads_input(layer, model) -> bool:
    """The layer is called on the model's input tensor, once (so its float input is the pixels)."""
    nodes = getattr(layer, "_inbound_nodes", [])
    return len(nodes) == 1 and len(nodes[0].keras_inputs) == 1 and nodes[0].keras_inputs[0] is model.input


def find_pairs(model) -> list[Pair]:
    """Every conv -> [BN] -> ReLU6 -> [zero padding] -> conv run of each chain, in order, per chain."""
    return [p for member, net in chains(model) for p in _chain_pairs(member, net)]


def _chain_pairs(member: tuple[str, ...], net) -> list[Pair]:
    keras = _keras()
    layers = net.layers
    pairs = []
    for i, layer in enumerate(layers):
        if not _is_relu6(layer) or i < 2:
            continue
        prev = layers[i - 1]
        if isinstance(prev, keras.layers.BatchNormalization) and isinstance(layers[i - 2], _convs()):
            producer = prev
        elif isinstance(prev, _convs()):
            producer = prev
        else:
            continue
        j = i + 1
        while j < len(layers) and isinstance(layers[j], keras.layers.ZeroPadding2D):
            j += 1
        if j < len(layers) and isinstance(layers[j], _convs()):
            pairs.append(Pair(member, producer.name, layer.name, layers[j].name))
    return pairs


def channel_maxima(model, relus: list[str], x: np.ndarray, batch: int = 20) -> dict[str, np.ndarray]:
    """Largest output of each channel of each named layer over the images."""
    probe = _keras().Model(model.input, [model.get_layer(n).output for n in relus])
    maxima: dict[str, np.ndarray] = {}
    for i in range(0, len(x), batch):
        outs = probe(x[i:i + batch].astype(np.float32), training=False)
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        for name, o in zip(relus, outs):
            m = np.asarray(o).reshape(-1, o.shape[-1]).max(0)
            maxima[name] = m if name not in maxima else np.maximum(maxima[name], m)
    return maxima


def scales_for(maximum: np.ndarray, settings: EqualizeSettings) -> np.ndarray:
    """s_c = clip(6 / (margin x max_c), 1, max_scale); channels that never fire keep 1."""
    live = maximum > 1e-6
    s = RELU6 / (settings.margin * np.where(live, maximum, 1.0))
    return np.where(live, np.clip(s, 1.0, settings.max_scale), 1.0).astype(np.float32)


def _scale_producer(layer, s: np.ndarray) -> None:
    keras = _keras()
    w = layer.get_weights()
    if isinstance(layer, keras.layers.BatchNormalization):
        cfg = layer.get_config()
        if not cfg["scale"]:
            raise CxrError(f"equalize: {layer.name} has no scale (gamma) to carry the channel scale")
        names = ["gamma"] + (["beta"] if cfg["center"] else []) + ["mean", "var"]
        w = [v * s if n in ("gamma", "beta") else v for n, v in zip(names, w)]
    else:  # conv without BN: kernel (.., out) for Conv2D, (.., C, 1) for DepthwiseConv2D; bias (out,)
        k = w[0] * (s[None, None, :, None] if isinstance(layer, keras.layers.DepthwiseConv2D) else s)
        w = [k] + [b * s for b in w[1:]]
    layer.set_weights(w)


def _scale_consumer(layer, s: np.ndarray) -> None:
    w = layer.get_weights()
    layer.set_weights([w[0] / s[None, None, :, None]] + w[1:])  # input channels are axis 2 in both kinds


def equalize(model, x: np.ndarray, settings: EqualizeSettings) -> tuple[object, dict]:
    """A copy of `model` with the first `settings.pairs` pairs equalized, and a record for the sidecar."""
    if settings.pairs < 0 or settings.margin < 1.0 or settings.max_scale < 1.0:
        raise CxrError(f"equalize: pairs >= 0, margin >= 1 and max scale >= 1 expected, got {asdict(settings)}")
    found = [(member, net, _chain_pairs(member, net)[:settings.pairs]) for member, net in chains(model)]
    record = {**asdict(settings), "pairs_equalized": sum(len(p) for _, _, p in found), "layers": []}
    if not record["pairs_equalized"] or not len(x):
        return model, record
    copy = _keras().models.clone_model(model)
    copy.set_weights(model.get_weights())
    for member, net, pairs in found:
        if not pairs:
            continue
        maxima = channel_maxima(net, [p.relu for p in pairs], x)
        target = copy
        for name in member:
            target = target.get_layer(name)
        for p in pairs:
            s = scales_for(maxima[p.relu], settings)
            _scale_producer(target.get_layer(p.producer), s)
            _scale_consumer(target.get_layer(p.consumer), s)
            record["layers"].append({**({"member": "/".join(member)} if member else {}), "relu": p.relu,
                                     "consumer": p.consumer, "channels": int(s.size),
                                     "scaled": int((s > 1.0).sum()),
                                     "median_scale": round(float(np.median(s)), 3),
                                     "max_scale": round(float(s.max()), 3)})
    return copy, record


def for_int8(model, x: np.ndarray, settings: EqualizeSettings | None,
             float32: bytes | None = None) -> tuple[object, bytes, dict | None]:
    """What the int8 converter works on: the equalized copy (the model itself with `settings` None, i.e.
    --no-equalize, or when nothing was equalized), that copy's float32 .tflite bytes (what calibration,
    rounding and bias correction aim at; `float32`, the model's own, is reused when the copy is the model)
    and the sidecar record (None with --no-equalize)."""
    from cxredge.convert.quantize import convert_float  # TensorFlow: not when the CLI starts
    from cxredge.vocab import REFERENCE

    copy, record = (model, None) if settings is None else equalize(model, x, settings)
    if copy is model and float32 is not None:
        return model, float32, record
    return copy, convert_float(copy, REFERENCE), record


__all__ = ["EqualizeSettings", "Pair", "chains", "channel_maxima", "equalize", "find_pairs", "for_int8", "is_chain",
           "scales_for"]
