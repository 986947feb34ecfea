"""ROC curves and reliability diagrams of a bench, one PNG each per model, from bench.json alone. TF-free.

roc_<variant>_<precision>.png: one curve per class (one-vs-rest, AUC in the legend), the 95%-specificity
  line and each class's operating point there;
reliability_<variant>_<precision>.png: accuracy per bin of top-1 probability against the diagonal, the
  bin counts below, ECE in the title.
matplotlib is optional (edge/render/plots.py): without it no plot is drawn.
"""
from __future__ import annotations

from pathlib import Path

from cxredge.edge.render.plots import matplotlib_pyplot, save


def slug(key: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in key.replace("/", "_"))


def clinical_plots(doc: dict, out_dir: Path, label: str = "") -> list[Path]:
    plt = matplotlib_pyplot()
    if plt is None:
        return []
    paths = []
    for key, m in doc.get("models", {}).items():
        if "reliability" not in m:
            continue
        if m.get("roc"):
            paths.append(roc_plot(plt, key, m, out_dir / f"roc_{slug(key)}.png", label))
        paths.append(reliability_plot(plt, key, m, out_dir / f"reliability_{slug(key)}.png", label))
    return paths


def roc_plot(plt, key: str, m: dict, path: Path, label: str = "") -> Path:
    fig, ax = plt.subplots(figsize=(5.0, 4.6))
    ax.plot([0, 1], [0, 1], color="0.75", lw=1, ls=":")
    ax.axvline(0.05, color="0.6", lw=0.8, ls="--", label="95% specificity")
    for c, pts in m["roc"].items():
        if not pts:
            continue
        v = m["per_class"][c]
        legend = f"{c}: AUC {v['auc']:.3f}" if v.get("auc") is not None else c
        line, = ax.step(pts["fpr"], pts["tpr"], where="post", lw=1.6, label=legend)
        if v.get("sens_at_spec95") is not None:
            ax.plot([0.05], [v["sens_at_spec95"]], "o", color=line.get_color(), ms=5)
    ax.set(xlabel="1 - specificity (false-positive rate)", ylabel="sensitivity", xlim=(-0.01, 1.01), ylim=(-0.01, 1.01),
           title=f"{key}{' on ' + label if label else ''}: ROC, one class vs rest")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    return save(fig, path)


def reliability_plot(plt, key: str, m: dict, path: Path, label: str = "") -> Path:
    rel = m["reliability"]
    bins = rel["bins"]
    table = rel["table"]
    width = 1.0 / bins
    centres = [(i + 0.5) * width for i in range(bins)]
    fig, (ax, axc) = plt.subplots(2, 1, figsize=(5.0, 5.2), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls=":", label="perfect calibration")
    acc = [a if a is not None else 0.0 for a in table["accuracy"]]
    conf = [c if c is not None else 0.0 for c in table["confidence"]]
    ax.bar(centres, acc, width=width * 0.95, color="#4C72B0", alpha=0.85, label="accuracy in bin")
    gaps = [(x, c, a) for x, c, a, n in zip(centres, conf, acc, table["count"]) if n]
    ax.bar([g[0] for g in gaps], [g[1] - g[2] for g in gaps], bottom=[g[2] for g in gaps], width=width * 0.95,
           fill=False, edgecolor="#C44E52", hatch="///", lw=0.8, label="gap to mean confidence")
    ax.plot([g[0] for g in gaps], [g[1] for g in gaps], "_", color="#C44E52", ms=10, mew=2)
    ax.set(ylabel="accuracy", ylim=(0, 1.02), xlim=(0, 1),
           title=f"{key}{' on ' + label if label else ''}: reliability (ECE {rel['ece']:.3f})")
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    axc.bar(centres, table["count"], width=width * 0.95, color="0.5")
    axc.set(xlabel="top-1 probability (confidence)", ylabel="images")
    return save(fig, path)
