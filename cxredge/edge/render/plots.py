"""Bench plots (PNG). TF-free. matplotlib is optional: without it no plot is drawn and one note says why.

bench_accuracy_latency.png: accuracy vs median latency, one point per model (its first ok row:
  first delegate, fewest threads); bench_latency.png: median latency (p90 as error bar) per model,
  one bar per (delegate, threads).
"""
from __future__ import annotations

from pathlib import Path

from cxredge.io import atomic_path

MISSING = "plots skipped: matplotlib is not installed (pip install matplotlib)"


def matplotlib_pyplot():
    """pyplot on the Agg backend, or None when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def save(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    fig.clf()
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def bench_plots(doc: dict, out_dir: Path, prefix: str = "bench_") -> tuple[list[Path], str | None]:
    """Draw the bench plots; return (paths, note). The note is set when plots were skipped."""
    plt = matplotlib_pyplot()
    if plt is None:
        return [], MISSING
    ok = [r for r in doc["results"] if r["status"] == "ok"]
    if not ok:
        return [], "plots skipped: no row finished"
    return [accuracy_latency(plt, ok, out_dir / f"{prefix}accuracy_latency.png", doc.get("models")),
            latency_bars(plt, ok, out_dir / f"{prefix}latency.png")], None


def accuracy_floor(lows: list[float]) -> float:
    """A sensible bottom for an accuracy axis: a multiple of 0.1 at least 0.05 under the lowest value
    (CI low where known) and never above 0.8, so the axis spans >= 0.2 and one image cannot look like a gap."""
    if not lows:
        return 0.0
    return max(0.0, min(0.8, int(10 * (min(lows) - 0.05)) / 10))


def accuracy_latency(plt, rows: list[dict], path: Path, doc_models: dict | None = None) -> Path:
    first: dict[str, dict] = {}
    for r in rows:
        first.setdefault(r["model"], r)
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    models = doc_models or {}
    lows = []
    for key, r in first.items():
        if r.get("accuracy") is None:
            continue
        marker = "o" if r["precision"] == "float32" else ("s" if "int8" in r["precision"] else "^")
        ci = ((models.get(key) or {}).get("ci95") or {}).get("accuracy")
        x, y = r["latency_ms"]["median"], r["accuracy"]
        lows.append(ci[0] if ci else y)
        if ci:  # the 95% CI: a one-image difference stays inside it
            ax.errorbar([x], [y], yerr=[[y - ci[0]], [ci[1] - y]], fmt="none", ecolor="0.6", capsize=3, lw=1)
        ax.scatter(x, y, marker=marker, s=50, zorder=3)
        ax.annotate(key, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
    bottom = accuracy_floor(lows)
    ax.set_ylim(bottom, 1.0)
    any_row = next(iter(first.values()))
    ax.set_xlabel(f"median latency, ms ({any_row['delegate']}, {any_row['threads']} thread(s))")
    ax.set_ylabel("accuracy (bars: 95% CI)")
    ax.set_title("accuracy vs latency per model" + (f" (accuracy axis from {bottom:.1f})" if bottom else ""))
    ax.grid(alpha=0.3)
    return save(fig, path)


def latency_bars(plt, rows: list[dict], path: Path) -> Path:
    import numpy as np

    models = list(dict.fromkeys(r["model"] for r in rows))
    configs = list(dict.fromkeys((r["delegate"], r["threads"]) for r in rows))
    width = 0.8 / max(len(configs), 1)
    fig, ax = plt.subplots(figsize=(max(6.5, 1.1 * len(models) + 2), 4.2))
    x = np.arange(len(models))
    for i, (delegate, threads) in enumerate(configs):
        med, err = [], []
        for m in models:
            r = next((r for r in rows if r["model"] == m and (r["delegate"], r["threads"]) == (delegate, threads)),
                     None)
            lat = r["latency_ms"] if r else None
            med.append(lat["median"] if lat else np.nan)
            err.append(lat["p90"] - lat["median"] if lat else 0)
        ax.bar(x + i * width - 0.4 + width / 2, med, width, yerr=[np.zeros(len(err)), err], capsize=2,
               label=f"{Path(delegate).name} x{threads}")
    ax.set_xticks(x, models, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("median latency, ms (bar to p90)")
    ax.set_title("latency per delegate and thread count")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return save(fig, path)


def confusion_plot(plt, cm: list[list[int]], classes: list[str], title: str, path: Path) -> Path:
    import numpy as np

    arr = np.asarray(cm)
    fig, ax = plt.subplots(figsize=(4.6, 4.0))
    ax.imshow(arr, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes, rotation=35, ha="right", fontsize=8)
    ax.set_yticks(range(len(classes)), classes, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(arr.shape[0]):
        for j in range(arr.shape[1]):
            ax.text(j, i, str(arr[i, j]), ha="center", va="center",
                    color="white" if arr[i, j] > arr.max() / 2 else "black", fontsize=8)
    ax.set_title(title, fontsize=10)
    return save(fig, path)


def curves_plot(plt, history: dict, title: str, path: Path) -> Path | None:
    keys = [k for k in ("loss", "val_loss", "accuracy", "val_accuracy") if isinstance(history.get(k), list)]
    if not keys:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))
    for k in keys:
        ax = axes[0] if "loss" in k else axes[1]
        ax.plot(range(1, len(history[k]) + 1), history[k], label=k)
    for ax, name in zip(axes, ("loss", "accuracy")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    return save(fig, path)
