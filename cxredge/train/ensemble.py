"""`cxredge ensemble`: trained models of one dataset -> one Keras model that averages their logits.

Each member is a cxredge model (raw pixels in, softmax out, the softmax inside its last Dense). The
ensemble feeds the same pixels to every member, takes each member's logits (the last Dense without
its softmax; the weights are copied, nothing retrains), averages them with optional weights and
applies one softmax. Averaging logits is averaging log-probabilities: a member's log-softmax differs
from its logits by a per-image constant, which the final softmax removes. The result is an ordinary
model.keras under <run>/ensemble/, so `cxredge quantize --variant ensemble` and `cxredge bench` take it
unchanged: one .tflite, one forward pass per member on the device (latency and size add up).
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cxredge.errors import CxrError
from cxredge.formats import RUN_JSON
from cxredge.io import read_json, sha256_file
from cxredge.keras import keras
from cxredge.model_file import load_keras_model

NAME = "ensemble"
MODEL_NAME = "cxredge_ensemble"  # the Keras model's name; gradcam recognises an ensemble by it


@dataclass
class Member:
    label: str  # how metrics.json names it: <variant> for the run's own, else <run folder>/<variant>
    path: Path  # its model.keras
    model: keras.Model
    classes: list[str]


def resolve_members(run_dir: Path, specs: list[str]) -> list[tuple[str, Path]]:
    """'two_conv' -> run_dir/two_conv/model.keras; 'OTHER_RUN/finetune' (a folder with model.keras)
    -> that file. Every member must exist, and no file may come twice."""
    out: list[tuple[str, Path]] = []
    for spec in specs:
        own = run_dir / spec / "model.keras"
        other = Path(spec) / "model.keras"
        if "/" not in spec and "\\" not in spec and own.is_file():
            out.append((spec, own))
        elif other.is_file():
            out.append((f"{other.parent.parent.name}/{other.parent.name}", other))
        else:
            raise CxrError(f"--members {spec}: neither {own} nor {other} exists (train it first)")
    paths = [p.resolve() for _, p in out]
    dupes = sorted({str(p) for p in paths if paths.count(p) > 1})
    if dupes:
        raise CxrError(f"--members: {dupes[0]} is named twice")
    if len(out) < 2:
        raise CxrError(f"--members {','.join(specs)}: an ensemble needs at least 2 models")
    return out


def member_classes(path: Path) -> list[str]:
    """The class list a member was trained on: run.json of the run folder above <variant>/."""
    run = path.parent.parent / RUN_JSON
    if not run.is_file():
        raise CxrError(f"{path}: no run.json beside its variant folder ({run}); cannot check its classes")
    doc = read_json(run)
    if not isinstance(doc, dict) or "classes" not in doc:
        raise CxrError(f"{run}: missing 'classes'")
    return list(doc["classes"])


def load_members(run_dir: Path, specs: list[str], classes: list[str]) -> list[Member]:
    members = []
    for label, path in resolve_members(run_dir, specs):
        theirs = member_classes(path)
        if theirs != classes:
            raise CxrError(f"--members {label}: trained on classes {theirs}, the run has {classes}")
        model = load_keras_model(path)
        members.append(Member(label, path, model, theirs))
    return members


def logits_model(model: keras.Model, name: str) -> keras.Model:
    """The member up to its last Dense, which is rebuilt without the softmax (same weights)."""
    last = model.layers[-1]
    if not isinstance(last, keras.layers.Dense) or last.get_config().get("activation") != "softmax":
        raise CxrError(f"member {name}: expected a cxredge model ending in Dense(softmax), "
                       f"found {type(last).__name__} '{last.name}'")
    head = keras.layers.Dense(last.units, activation=None, name=f"{name}_logits")
    features = keras.Model(model.input, last.input, name=f"{name}_features")
    inp = keras.Input(model.input.shape[1:], name=f"{name}_pixels")
    out = head(features(inp))
    head.set_weights(last.get_weights())
    return keras.Model(inp, out, name=name)


def member_name(index: int, label: str) -> str:
    safe = "".join(c if c.isalnum() else "_" for c in label)
    return f"m{index}_{safe}"


def build(members: list[Member], weights: list[float] | None = None) -> keras.Model:
    """One model: pixels -> each member's logits -> weighted mean -> softmax."""
    if weights is not None and len(weights) != len(members):
        raise CxrError(f"--weights: {len(weights)} numbers for {len(members)} members")
    w = np.asarray(weights if weights is not None else [1.0] * len(members), dtype=np.float64)
    if (w < 0).any() or w.sum() <= 0:
        raise CxrError("--weights: expected non-negative numbers with a positive sum")
    w = w / w.sum()
    shape = members[0].model.input.shape[1:]
    for m in members[1:]:
        if m.model.input.shape[1:] != shape:
            raise CxrError(f"--members {m.label}: input {tuple(m.model.input.shape[1:])}, "
                           f"{members[0].label} has {tuple(shape)}")
    inp = keras.Input(shape, name="pixels")
    logits = [logits_model(m.model, member_name(i, m.label))(inp) for i, m in enumerate(members)]
    scaled = [keras.layers.Rescaling(float(wi), name=f"weight_{i}")(z) for i, (z, wi) in enumerate(zip(logits, w))]
    mean = keras.layers.Add(name="mean_logits")(scaled)
    out = keras.layers.Softmax(name="probs")(mean)
    return keras.Model(inp, out, name=MODEL_NAME)


def record(members: list[Member], weights: list[float] | None) -> dict:
    """What metrics.json says about the members (files, hashes, weights)."""
    w = weights if weights is not None else [1.0] * len(members)
    total = float(sum(w))
    return {"members": [{"label": m.label, "model": str(m.path), "sha256": sha256_file(m.path),
                         "weight": round(float(wi) / total, 6)} for m, wi in zip(members, w)],
            "combine": "weighted mean of logits, then softmax",
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
