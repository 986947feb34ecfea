"""Grad-CAM for a trained model.keras (training side: needs TensorFlow), in the same format as occlusion.

Grad-CAM (Selvaraju et al., ICCV 2017): the class score's gradient with respect to a late convolutional
feature map A (default `conv_pw_13_relu`, MobileNet's last 7 x 7 map), averaged over space, weights each
channel k (alpha_k); the map is ReLU(sum_k alpha_k A_k), 7 x 7, upsampled bilinearly to the image. The
class score is the pre-softmax logit: when the last layer is a softmax Dense (the cxredge head), the
logit is computed from that layer's input and weights, as the paper asks (softmax gradients saturate).
The map is scaled to max 1 per image (Grad-CAM has no absolute unit); `Saliency.grid` holds the 7 x 7.

`keras_explainer` gives `cxredge explain model.keras` either Grad-CAM or occlusion through Keras.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from PIL import Image

from cxredge.edge.explain.occlusion import OcclusionSettings, Saliency, occlusion
from cxredge.edge.explain.run import Explainer
from cxredge.errors import CxrError
from cxredge.formats import RUN_JSON
from cxredge.io import read_json
from cxredge.keras import keras, tf
from cxredge.model_file import load_keras_model
from cxredge.train.ensemble import MODEL_NAME as ENSEMBLE_MODEL_NAME

GRADCAM_LAYER = "conv_pw_13_relu"


def gradcam_model(model, layer: str = GRADCAM_LAYER):
    """A model giving (feature map, class logits) for Grad-CAM."""
    try:
        feat = model.get_layer(layer).output
    except ValueError:
        hint = (" (an ensemble: explain one member's model.keras, or the ensemble's .tflite by occlusion)"
                if model.name == ENSEMBLE_MODEL_NAME else "")
        raise CxrError(f"{model.name}: no layer {layer} for Grad-CAM{hint}") from None
    last = model.layers[-1]
    if isinstance(last, keras.layers.Dense) and last.activation is keras.activations.softmax:
        pre = last.input
        logits = tf.matmul(pre, last.kernel) + last.bias
        return keras.Model(model.inputs, [feat, logits, model.output])
    return keras.Model(model.inputs, [feat, model.output, model.output])


def gradcam(gmodel, image: np.ndarray, target: int | None = None) -> Saliency:
    """Grad-CAM of one (H, W, 3) uint8 image for `target` (default: the predicted class)."""
    t0 = time.perf_counter()
    x = tf.convert_to_tensor(image[None].astype("float32"))
    with tf.GradientTape() as tape:
        feat, logits, probs = gmodel(x, training=False)
        t = int(tf.argmax(probs[0])) if target is None else target
        score = logits[:, t]
    grads = tape.gradient(score, feat)[0].numpy()
    a = feat[0].numpy()
    cam = np.maximum((a * grads.mean(axis=(0, 1))).sum(axis=-1), 0).astype(np.float32)
    cam = cam / cam.max() if cam.max() > 0 else cam
    heat = np.asarray(Image.fromarray(cam, "F").resize(image.shape[1::-1], Image.BILINEAR), dtype=np.float32)
    return Saliency(probs[0].numpy(), t, cam, heat, time.perf_counter() - t0, method="gradcam")


def run_labels(path: Path, labels_file: Path | None) -> list[str]:
    from cxredge.edge.formats.sidecar import read_labels_file

    if labels_file is not None:
        return read_labels_file(labels_file)
    run = path.resolve().parent.parent / RUN_JSON
    classes = (read_json(run) or {}).get("classes") if run.is_file() else None
    if not classes:
        raise CxrError(f"{path}: no run.json with classes two folders up; pass --labels FILE")
    return list(classes)


def keras_explainer(path: Path, settings: OcclusionSettings, method: str, batch: int | None,
                    labels_file: Path | None) -> Explainer:
    model = load_keras_model(path)
    names = run_labels(path, labels_file)
    if int(model.output_shape[-1]) != len(names):
        raise CxrError(f"{path}: {model.output_shape[-1]} outputs but {len(names)} labels ({', '.join(names)})")
    size = int(model.input_shape[1])
    batch = batch or 16  # occlusion through Keras: copies per model call
    settings.check(size)
    info = {"key": f"keras_{method}", "path": str(path), "variant": path.parent.name, "precision": "keras float32",
            "method": method, "runtime": f"tensorflow {tf.__version__}", "batch": batch, "labels": names,
            "image_size": size, "note": None}
    if method == "gradcam":
        gm = gradcam_model(model)
        return Explainer(info["key"], {**info, "layer": GRADCAM_LAYER, "batch": 1},
                         lambda img, target, progress: _counted(gradcam(gm, img, target), progress), 1)

    def predict(x: np.ndarray) -> np.ndarray:
        return model(x.astype("float32"), training=False).numpy()

    from cxredge.edge.explain.occlusion import positions

    steps = len(positions(size, settings.patch, settings.stride)) ** 2
    return Explainer(info["key"], info, lambda img, target, progress: occlusion(predict, img, settings, batch, target,
                                                                                progress), steps)


def _counted(sal: Saliency, progress) -> Saliency:
    if progress:
        progress(1)
    return sal
