"""The report's "Where the model looks" section, from `cxredge explain` output (<run>/explain/). TF-free.

Shows the grid of heatmap overlays (rows = classes), the border share per class and model next to the
border strip's share of the image area (what a map that ignores position would give), and the
correlation of the compared models' maps.
"""
from __future__ import annotations

from pathlib import Path

from cxredge.edge.bench.results import fmt
from cxredge.edge.report.inputs import check_explain
from cxredge.errors import CxrError
from cxredge.formats import EXPLAIN_DIR, EXPLAIN_JSON
from cxredge.io import read_json


def find_explain(run_dir: Path) -> Path | None:
    path = run_dir / EXPLAIN_DIR / EXPLAIN_JSON
    return path if path.is_file() else None


def saliency_section(doc, run_dir: Path) -> None:
    """Append the section to a report Doc when the run has explain output; a broken file becomes a note."""
    path = find_explain(run_dir)
    if path is None:
        return
    try:
        ex = check_explain(path, read_json(path))
        keys = [m["key"] for m in ex["models"]]
        per = ex["summary"]["per_class"]
        for name, g in [*per.items(), ("all", ex["summary"]["all"])]:
            for k in keys:
                if not isinstance(g.get(k), dict) or not isinstance(g.get("n"), int):
                    raise CxrError(f"{path}: not a usable explain.json (summary {name}.{k}: missing)")
    except CxrError as exc:
        doc.warnings.append(f"saliency section left out: {exc}")
        return
    reg = ex["regions"]
    s = ex["settings"]
    doc.h(2, "Where the model looks (occlusion saliency)")
    models = "; ".join(f"{m['key']}: `{m['path']}` ({m['method']})" for m in ex["models"])
    doc.p(f"{len(ex['images'])} images from `cxredge explain` ({path.parent}); {models}. Occlusion: a {s['patch']} px "
          f"patch of gray {s['fill']} every {s['stride']} px; heat = drop of the {s['target']} class's probability "
          f"(red: evidence for the class). Border share: the share of the positive saliency in the "
          f"{reg['definition']}; "
          f"the strip is {reg['border_area_share']:.1%} of the area, so a share well above that means the model "
          "leans on the film's edges (labels, markers, collimation, body outline) more than on the lungs.")
    # only a PNG inside the run folder is embedded (a crafted `grid` must not put another file in the page)
    doc.img(path.parent / ex.get("grid", "grid.png"), "heatmaps per class (rows); columns: images x models",
            root=run_dir)
    headers = ["class", "n"] + [h for k in keys for h in (f"{k} accuracy", f"{k} border share")]
    headers += [h for k in keys[1:] for h in (f"Pearson {k} vs {keys[0]}", f"Spearman {k} vs {keys[0]}", "same class")]
    rows = [row(c, g, keys) for c, g in per.items()] + [row("all", ex["summary"]["all"], keys)]
    doc.table(headers, rows)
    doc.p(f"Grouped by {ex['summary']['grouped_by']}; border share of the strip's area: "
          f"{reg['border_area_share']:.3f}. "
          "Occlusion maps show what the model needs, at the patch's resolution; they do not prove a cause. "
          "See docs/explain.md.")


def row(name: str, g: dict, keys: list[str]) -> list[str]:
    cells = [name, str(g["n"])]
    for k in keys:
        cells += [fmt(g[k].get("accuracy")), fmt(g[k].get("border_share_mean"))]
    for k in keys[1:]:
        cells += [fmt(g[k].get("pearson_mean")), fmt(g[k].get("spearman_mean")), fmt(g[k].get("same_class"))]
    return cells
