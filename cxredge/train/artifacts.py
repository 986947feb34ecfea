"""Writing a variant's artifacts (the run folder of cxredge/formats.py), every file atomically."""
from __future__ import annotations

from pathlib import Path

from cxredge.formats import METRICS_JSON
from cxredge.io import atomic_path, write_json
from cxredge.keras import keras
from cxredge.plots import plot_confusion, plot_curves


def save_model(model: keras.Model, path: str | Path) -> Path:
    """model.save to a temporary `.keras` file next to `path`, then os.replace (never half a model)."""
    with atomic_path(path, suffix=".keras") as tmp:
        model.save(str(tmp), save_format="keras")
    return Path(path)


def write_variant(out: Path, variant: str, model: keras.Model, history: dict, metrics: dict) -> None:
    """model.keras, history.json, curves.png, metrics.json, confusion.png under out/variant/."""
    folder = out / variant
    save_model(model, folder / "model.keras")
    write_json(folder / "history.json", history)
    plot_curves(history, folder / "curves.png", title=f"{variant}: training curves")
    write_json(folder / METRICS_JSON, metrics)
    plot_confusion(metrics["confusion_matrix"], metrics["classes"], folder / "confusion.png",
                   title=f"{variant}: test accuracy {metrics['accuracy']:.3f}, macro-F1 {metrics['macro_f1']:.3f}")
