"""predict's pipeline: open one .tflite (or a bundle's member), classify each image, mark near-ties and OOD. TF-free.

`cxredge predict` calls run_predict once and prints what it returns; the line for an unreadable image is
passed in (`skipped`), so this module never imports the CLI. explain shares expand_images and
model_in_bundle, and opens its model with the same open_model (cxredge/edge/runtime/interpreter.py).
"""
from __future__ import annotations

import contextlib
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from cxredge.errors import CxrError

MARGIN = 0.10  # top-1 minus top-2 probability below this: a near-tie, marked "low margin"


@dataclass
class Prediction:
    """What run_predict found: one result per readable image, the unreadable ones, and who answered."""
    results: list[dict]
    bad: list[str]
    files: list[Path]
    names: list[str]
    guard: object
    who: dict
    runtime: str
    image_size: int | None = None


def run_predict(model: Path, images: list[Path], labels: Path | None = None, threads: int = 1,
                delegate: str = "xnnpack", variant: str = "two_conv", precision: str = "int8", margin: float = MARGIN,
                skipped: Callable[[str], None] | None = None) -> Prediction:
    """Classify `images` (files or folders) with `model` (.tflite or bundle); `skipped(error)` per unreadable one."""
    from cxredge.edge.formats.sidecar import model_labels
    from cxredge.edge.ood.flags import Guard
    from cxredge.edge.runtime.interpreter import check_tflite_file, check_threads, open_model
    from cxredge.vocab import resolve_delegate

    if not 0 <= margin < 1:
        raise CxrError(f"--margin {margin}: expected a probability difference from 0 (never) to below 1")
    with contextlib.ExitStack() as stack:
        path = model_in_bundle(model, variant, precision, stack) if model.suffix.lower() == ".zip" else model
        check_tflite_file(path)
        names = model_labels(path, labels)
        m = open_model(path, names, threads=check_threads(threads), delegate=resolve_delegate(delegate))
        files = expand_images(images)
        guard = Guard.for_model(path, str(model), m.image_size)  # OOD guard; no `ood` key: no guard, said below
        who = identify(model, path)
        results, bad = classify(m, files, names, guard, margin, skipped=skipped)
        runtime = f"{m.runtime.name} {m.runtime.version}"
    return Prediction(results, bad, files, names, guard, who, runtime, m.image_size)


def untrusted_reason(results: list[dict], guard) -> str | None:
    """Why no prediction can be trusted (every input out of distribution, or no guard), else None."""
    if not results:
        return None
    if guard.ref is None:
        return f"no input could be checked: {guard.model_name} has no OOD guard ({guard.why})"
    if all(r.get("in_distribution") is False for r in results):
        return f"every input ({len(results)} of {len(results)}) looks unlike the model's {guard.ref.split} images"
    return None


def identify(given: Path, path: Path) -> dict:
    """The model that answers: the file given, the member of a bundle, its variant, precision and sha256."""
    from cxredge.edge.formats.sidecar import read_sidecar
    from cxredge.io import sha256_file

    try:
        side = read_sidecar(path) or {}
    except CxrError:
        side = {}
    bundled = given.suffix.lower() == ".zip"
    return {"path": str(given), "member": f"{path.parent.name}/{path.name}" if bundled else None,
            "variant": side.get("variant") or (path.parent.name if bundled else None),
            "precision": side.get("precision") or (path.stem if bundled else None),
            "sha256": sha256_file(path)}


def model_in_bundle(bundle: Path, variant: str, precision: str, stack: contextlib.ExitStack) -> Path:
    from cxredge.edge.formats.bundle import open_bundle
    from cxredge.io import scratch_dir

    dest = stack.enter_context(scratch_dir(tempfile.gettempdir()))  # stale ones of killed runs are removed
    manifest = open_bundle(bundle, dest)
    path = dest / variant / f"{precision}.tflite"
    if not path.is_file():
        have = ", ".join(m["path"] for m in manifest.get("models", []))
        raise CxrError(f"{bundle}: no {variant}/{precision}.tflite inside (has {have}); use --variant/--precision")
    return path


def expand_images(items: list[Path]) -> list[Path]:
    from cxredge.edge.data.images import IMAGE_SUFFIXES, is_image_file

    files: list[Path] = []
    for item in items:
        if item.is_dir():
            found = sorted(p for p in item.rglob("*") if is_image_file(p))  # + suffixless DICOM (PACS exports)
            if not found:
                raise CxrError(f"{item}: folder has no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
            files += found
        else:
            files.append(item)
    return files


def classify(model, files: list[Path], names: list[str], guard=None, margin: float = MARGIN,
             skipped: Callable[[str], None] | None = None) -> tuple[list[dict], list[str]]:
    """Each readable image's top class, probabilities and margin (and OOD marks with a guard); `skipped(error)`
    is called for each unreadable one, whose error also goes to the second list."""
    import numpy as np

    from cxredge.edge.data.dicom import is_dicom, read_facts
    from cxredge.edge.data.images import load_image

    results, bad = [], []
    size = model.image_size
    for f in files:
        try:
            img = load_image(f, size)
        except CxrError as exc:
            bad.append(str(exc))
            if skipped is not None:
                skipped(str(exc))
            continue
        model.set_input(img)
        model.invoke()
        probs = model.output()[0]
        raw = model.raw_output()[0]
        top = int(probs.argmax())
        second = float(np.partition(probs, -2)[-2]) if len(probs) > 1 else 0.0
        gap = float(probs[top]) - second
        results.append({"image": str(f), "label": names[top], "index": top, "probability": float(probs[top]),
                        "probabilities": {n: float(p) for n, p in zip(names, probs)}, "raw": raw.tolist(),
                        "margin": round(gap, 4), "low_margin": bool(gap < margin)})
        if is_dicom(f):  # what the header says about the film (no patient data): view, photometric, bits
            results[-1]["dicom"] = read_facts(f).record()
        if guard is not None:
            guard.mark(results[-1], img)
    return results, bad
