"""The report's clinical validation: per bench, and internal vs external datasets side by side. TF-free.

- `clinical_blocks`: under each bench, the clinical table with 95% CIs (accuracy, macro-F1, macro AUC,
  Brier, ECE, the paired change against float32 with McNemar's p), per class sensitivity / specificity
  (95% CI), PPV, NPV, AUC, sensitivity at 95% specificity, and each model's ROC curves and reliability
  diagram (the bench's PNGs, or drawn from bench.json when they are not next to it).
- `datasets_section`: when the benches evaluated different labelled images (an internal test split and
  an external test set), every model's results on each dataset next to the first one's, with the change,
  and a plot of accuracy with its 95% CI per dataset. The report puts it first.
Datasets are told apart by dataset.images_sha256 (cxredge/edge/formats/fingerprint.py), else path, split and n.
"""
from __future__ import annotations

from pathlib import Path

from cxredge.edge.bench.results import fmt
from cxredge.edge.render import clinical_tables as T
from cxredge.edge.render.clinical_plots import clinical_plots, slug
from cxredge.edge.render.plots import accuracy_floor, matplotlib_pyplot, save


def dataset_key(b: dict) -> tuple:
    ds = b.get("dataset") or {}
    return (ds.get("images_sha256"),) if ds.get("images_sha256") else (ds.get("path"), ds.get("split"), ds.get("n"))


def short_name(b: dict) -> str:
    ds = b.get("dataset") or {}
    return ds.get("name") or Path(str(ds.get("path") or "?")).name


def dataset_label(b: dict) -> str:
    ds = b.get("dataset") or {}
    return f"{short_name(b)} ({ds.get('split')}, n={ds.get('n')})"


def group_by_dataset(benches: list[tuple[Path, dict]]) -> list[list[tuple[Path, dict]]]:
    groups: dict[tuple, list] = {}
    for path, b in benches:
        if b.get("origin") == "benchmark_model":  # latency only: it joins the first dataset's device comparison
            groups.setdefault(dataset_key(benches[0][1]), []).append((path, b))
        else:
            groups.setdefault(dataset_key(b), []).append((path, b))
    return list(groups.values())


def clinical_blocks(doc, path: Path, b: dict, assets: Path) -> None:
    """The clinical tables and figures of one bench (nothing for a bench without them)."""
    if not T.has_clinical(b):
        return
    c = b.get("clinical") or {}
    classes = (b.get("dataset") or {}).get("classes") or []
    doc.p(f"Clinical metrics on {dataset_label(b)}: one-vs-rest per class; "
          + (f"95% CI by percentile bootstrap over images ({c.get('resamples')} resamples, seed {c.get('seed')}); "
             if c.get("resamples") else "no confidence intervals (bench --ci 0); ")
          + "McNemar: exact test of per-image correctness against the float32 model of the same variant.")
    doc.table(T.SUMMARY_HEADERS, T.summary_rows(b))
    plots = set(b.get("plots") or [])
    missing = [k for k in b["models"] if f"roc_{slug(k)}.png" not in plots and "reliability" in b["models"][k]]
    drawn = {p.name: p for p in clinical_plots({"models": {k: b["models"][k] for k in missing}}, assets,
                                               (b.get("dataset") or {}).get("name") or "")} if missing else {}
    for key, m in b["models"].items():
        if "macro_auc" not in m:
            continue
        doc.p(f"{key} on {dataset_label(b)}, per class:")
        doc.table(T.CLASS_HEADERS, T.class_rows(m, classes))
        for kind, caption in (("roc", "ROC curves, one class vs rest (dot: sensitivity at 95% specificity)"),
                              ("reliability", "reliability diagram (accuracy per bin of top-1 probability)")):
            name = f"{kind}_{slug(key)}.png"
            if name in drawn:
                doc.img(drawn[name], f"{key}: {caption}")
            else:
                doc.img(path.parent / name, f"{key}: {caption}", root=path.parent)


def _change(a, b, points: bool = True) -> str:
    if a is None or b is None:
        return "-"
    return f"{100 * (b - a):+.1f} pt" if points else f"{b - a:+.3f}"


def datasets_section(doc, benches: list[tuple[Path, dict]], assets: Path) -> bool:
    """Internal vs external side by side; returns False (nothing written) when all benches share a dataset."""
    groups = [g for g in group_by_dataset(benches) if T.has_clinical(g[0][1]) or any(
        r.get("accuracy") is not None for r in g[0][1].get("results") or [])]
    if len(groups) < 2:
        return False
    first = groups[0][0][1]
    others = [g[0][1] for g in groups[1:]]
    doc.h(2, "Internal vs external test sets")
    doc.p(f"The same models on {len(groups)} labelled datasets; changes are against {dataset_label(first)}. "
          "A drop on another hospital's images is the first thing to check before trusting a model outside "
          "the data it was trained on.")
    for other in others:
        rows, flags = [], []
        for key, m in first.get("models", {}).items():
            o = other.get("models", {}).get(key)
            if o is None:
                continue
            sa, so = _sha(first, key), _sha(other, key)
            if sa and so and sa != so:
                flags.append(f"{key}: other model bytes on {dataset_label(other)} (sha256 {so[:12]} vs {sa[:12]})")
            ca, co = m.get("ci95") or {}, o.get("ci95") or {}
            rows.append([key, T.with_ci(m.get("accuracy"), ca.get("accuracy")),
                         T.with_ci(o.get("accuracy"), co.get("accuracy")),
                         _change(m.get("accuracy"), o.get("accuracy")),
                         T.with_ci(m.get("macro_auc"), ca.get("macro_auc")),
                         T.with_ci(o.get("macro_auc"), co.get("macro_auc")),
                         _change(m.get("macro_auc"), o.get("macro_auc"), points=False),
                         fmt(m.get("ece")), fmt(o.get("ece"))])
        a, b = short_name(first), short_name(other)
        doc.notes.append(f"dataset: {dataset_label(other)} holds other labelled images than {dataset_label(first)}: "
                         "its results are compared with the first one's as another dataset (section Internal vs "
                         "external test sets)")
        doc.h(3, f"{dataset_label(first)} -> {dataset_label(other)}")
        doc.table(["model", f"accuracy: {a}", f"accuracy: {b}", "change", f"macro AUC: {a}", f"macro AUC: {b}",
                   "change", f"ECE: {a}", f"ECE: {b}"], rows)
        doc.table(["model", "class", f"sensitivity: {a}", f"sensitivity: {b}", "change", f"specificity: {a}",
                   f"specificity: {b}", "change"], class_change_rows(first, other))
        for f in flags:
            doc.p("Flag: " + f)
            doc.notes.append(f)
    doc.img(datasets_plot(first, others, assets / "datasets_accuracy.png"),
            "accuracy with its 95% CI per model and dataset")
    return True


def class_change_rows(first: dict, other: dict) -> list[list[str]]:
    rows = []
    for key, m in first.get("models", {}).items():
        o = other.get("models", {}).get(key)
        if o is None or "per_class" not in o:
            continue
        for c, v in m.get("per_class", {}).items():
            w = (o.get("per_class") or {}).get(c, {})
            rows.append([key, c, fmt(v.get("sensitivity")), fmt(w.get("sensitivity")),
                         _change(v.get("sensitivity"), w.get("sensitivity")), fmt(v.get("specificity")),
                         fmt(w.get("specificity")), _change(v.get("specificity"), w.get("specificity"))])
    return rows


def _sha(b: dict, key: str) -> str | None:
    return next((r.get("sha256") for r in b.get("results") or [] if r["model"] == key and r.get("sha256")), None)


def datasets_plot(first: dict, others: list[dict], path: Path) -> Path | None:
    plt = matplotlib_pyplot()
    if plt is None:
        return None
    benches = [first] + others
    keys = [k for k in first.get("models", {}) if all(k in b.get("models", {}) for b in others)]
    if not keys:
        return None
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(keys) + 2), 4.2))
    width = 0.8 / len(benches)
    lows = [((b["models"][k].get("ci95") or {}).get("accuracy") or [b["models"][k].get("accuracy") or 0.0])[0]
            for b in benches for k in keys]
    bottom = accuracy_floor(lows)
    for j, b in enumerate(benches):
        xs = [i + (j - (len(benches) - 1) / 2) * width for i in range(len(keys))]
        acc = [b["models"][k].get("accuracy") or 0.0 for k in keys]
        cis = [(b["models"][k].get("ci95") or {}).get("accuracy") for k in keys]
        err = [[a - ci[0] if ci else 0 for a, ci in zip(acc, cis)], [ci[1] - a if ci else 0 for a, ci in zip(acc, cis)]]
        ax.bar(xs, acc, width=width * 0.95, yerr=err, capsize=3, label=dataset_label(b))
    ax.set_xticks(range(len(keys)))
    ax.set_xticklabels(keys, rotation=30, ha="right", fontsize=8)
    ax.set(ylabel="accuracy (95% CI)", ylim=(bottom, 1), title="the same models on each dataset"
           + (f" (axis from {bottom:.1f})" if bottom else ""))
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(axis="y", alpha=0.3)
    return save(fig, path)
