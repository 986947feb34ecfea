"""The clinical tables of a bench (console, bench.md, report), in the field's words. TF-free."""
from __future__ import annotations

from cxredge import markdown as md
from cxredge.edge.render.document import fmt, md_table

SUMMARY_HEADERS = ["model", "accuracy (95% CI)", "macro-F1 (95% CI)", "macro AUC (95% CI)", "Brier", "ECE",
                   "vs float32: accuracy change (95% CI)", "McNemar p"]
CLASS_HEADERS = ["class", "n", "sensitivity (95% CI)", "specificity (95% CI)", "PPV", "NPV", "F1", "AUC",
                 "sens. at 95% spec."]


def with_ci(value, ci, spec: str = ".3f") -> str:
    if value is None:
        return "-"
    return f"{value:{spec}}" + (f" ({ci[0]:{spec}}-{ci[1]:{spec}})" if ci else "")


def pvalue(p) -> str:
    if p is None:
        return "-"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def diff_cell(key: str, paired: dict | None) -> str:
    if not paired:
        return "-"
    if paired["reference"] == key:
        return "reference"
    ci = paired.get("accuracy_diff_ci95")
    text = f"{100 * paired['accuracy_diff']:+.1f} pt"
    return text + (f" ({100 * ci[0]:+.1f} to {100 * ci[1]:+.1f})" if ci else "")


def summary_row(key: str, m: dict) -> list[str]:
    ci = m.get("ci95") or {}
    paired = m.get("paired_vs_float")
    return [key, with_ci(m.get("accuracy"), ci.get("accuracy")), with_ci(m.get("macro_f1"), ci.get("macro_f1")),
            with_ci(m.get("macro_auc"), ci.get("macro_auc")), fmt(m.get("brier")), fmt(m.get("ece")),
            diff_cell(key, paired),
            "-" if not paired or paired["reference"] == key else pvalue(paired.get("mcnemar_p"))]


def summary_rows(doc: dict) -> list[list[str]]:
    return [summary_row(k, m) for k, m in doc.get("models", {}).items() if "macro_auc" in m]


def class_rows(m: dict, classes: list[str]) -> list[list[str]]:
    ci = m.get("ci95") or {}
    rows = []
    for c in classes:
        v = (m.get("per_class") or {}).get(c, {})
        rows.append([c, str(v.get("support", "-")),
                     with_ci(v.get("sensitivity"), (ci.get("sensitivity") or {}).get(c)),
                     with_ci(v.get("specificity"), (ci.get("specificity") or {}).get(c)),
                     fmt(v.get("ppv")), fmt(v.get("npv")), fmt(v.get("f1")), fmt(v.get("auc")),
                     fmt(v.get("sens_at_spec95"))])
    return rows


def has_clinical(doc: dict) -> bool:
    return any("macro_auc" in m for m in doc.get("models", {}).values())


def markdown(doc: dict) -> list[str]:
    """bench.md's clinical section."""
    if not has_clinical(doc):
        return []
    c = doc.get("clinical") or {}
    classes = doc.get("dataset", {}).get("classes", [])
    ci_note = (f"95% CI: percentile bootstrap over images, {c.get('resamples')} resamples (seed {c.get('seed')})"
               if c.get("resamples") else "no confidence intervals (--ci 0)")
    parts = ["## Clinical metrics", "",
             f"One-vs-rest per class from the top-1 decision; AUC and sensitivity at 95% specificity from the "
             f"class probability; ECE over {c.get('ece_bins', 15)} bins of the top-1 probability; {ci_note}. "
             "McNemar: exact test of per-image correctness against the float32 model of the same variant.", "",
             md_table(SUMMARY_HEADERS, summary_rows(doc)), ""]
    for key, m in doc.get("models", {}).items():
        if "macro_auc" in m:
            parts += [f"### {md.text(key)}", "", md_table(CLASS_HEADERS, class_rows(m, classes)), ""]
    return parts


def rich_table(doc: dict):
    from rich import box
    from rich.table import Table

    c = doc.get("clinical") or {}
    ds = doc.get("dataset", {})
    title = f"clinical metrics on {ds.get('name') or ds.get('path')} ({ds.get('n')} images" + (
        f", 95% CI from {c['resamples']} bootstrap resamples)" if c.get("resamples") else ", no CI)")
    table = Table(title=title, box=box.SIMPLE_HEAD, padding=(0, 1), collapse_padding=True, pad_edge=False,
                  show_edge=False)
    # short headers, each interval on its own line under its value: fits 80 columns, no name or number is cut
    rows = summary_rows(doc)
    longest = max([len(r[0]) for r in rows] + [5])
    for h in ["model", "acc (95% CI)", "AUC (95% CI)", "ECE", "vs fp32", "McNemar"]:
        table.add_column(h, justify="left" if h == "model" else "right", overflow="fold", no_wrap=h == "model",
                         min_width=longest if h == "model" else None)
    for row in rows:  # the interval on the line under its value, without brackets
        cells = (row[0], row[1], row[3], row[5], row[6], row[7])
        table.add_row(*[str(v).replace(" (", "\n", 1).removesuffix(")") for v in cells])
    return table
