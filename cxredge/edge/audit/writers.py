"""audit.json, audit.md and audit.html (thumbnails and duplicate pairs base64-embedded), rendered in
memory and then written as one unit (all three or none: io.write_files). The page uses the report's style
(cxredge/edge/report/page.py); the Markdown twin escapes every name (cxredge/markdown.py). TF-free.
"""
from __future__ import annotations

import base64
import html
import io
from pathlib import Path

from cxredge.edge.audit.features import GROUP_TITLES, GROUPS
from cxredge.edge.data.images import open_image
from cxredge.edge.render.document import CSS, Doc, block_html, to_markdown
from cxredge.errors import CxrError
from cxredge.formats import AUDIT_HTML, AUDIT_JSON, AUDIT_MD
from cxredge.io import json_text, shown, write_files

MAX_GROUPS = 40  # duplicate groups listed in the md/html (all of them are in audit.json)
THUMB = 112
EXTRA_CSS = (".warn{background:#fff5d6;border-left:4px solid #e0a800;padding:6px 10px;margin:6px 0;font-size:14px}"
             ".thumbs{display:flex;flex-wrap:wrap;gap:4px;margin:4px 0 12px}.thumbs figure{margin:0}"
             ".thumbs figcaption{font-size:10px;max-width:112px;overflow:hidden;white-space:nowrap}"
             "td.hit{font-weight:bold}")


def fmt_acc(v) -> str:
    return "-" if v is None else f"{v:.3f}"


def audit_doc(a: dict) -> Doc:
    doc = Doc()
    n = sum(sum(c.values()) for c in a["counts"].values())
    doc.h(1, "cxredge audit")
    doc.p(f"Data `{a['data']['path']}` ({a['data']['layout']}); {n} images, {len(a['classes'])} classes "
          f"({', '.join(a['classes'])}); read from: {a['source']}; "
          f"{a['seconds'].get('total', sum(a['seconds'].values())):.1f} s.")
    doc.h(2, f"Warnings ({len(a['warnings'])})")
    if not a["warnings"]:
        doc.p("None: no class pair is told apart far above chance by the probe's cues or the file facts, "
              "and no duplicate crosses a class or a split.")
    for w in a["warnings"]:
        doc.blocks.append(("warn", w["kind"], w["message"]))
    if a.get("unreadable"):
        doc.p(f"Unreadable files skipped ({len(a['unreadable'])}): " + ", ".join(a["unreadable"][:20]))
    counts_section(doc, a)
    files_section(doc, a)
    probe_section(doc, a["probe"])
    duplicates_section(doc, a)
    doc.h(2, "What this audit can and cannot tell")
    doc.p("A pair flagged here is separable by things that should carry no diagnosis: a model trained on it can "
          "score well by learning the source (hospital, scanner, age group, export pipeline) instead of the disease. "
          "A quiet audit does not prove the opposite: the probe is linear and sees ~100 numbers per image, a CNN sees "
          "every pixel. Method, thresholds and the measurements behind them: docs/audit.md.")
    return doc


def counts_section(doc: Doc, a: dict) -> None:
    doc.h(2, "Images per split and class")
    doc.table(["split"] + a["classes"] + ["total"],
              [[s] + [str(c.get(k, 0)) for k in a["classes"]] + [str(sum(c.values()))] for s, c in a["counts"].items()])


def files_section(doc: Doc, a: dict) -> None:
    doc.h(2, "The files")
    rows = []
    for split, per_class in a["files"].items():
        for c, f in per_class.items():
            if not f.get("n"):
                continue
            rows.append([f"{split} / {c}", str(f["n"]), _counter(f["formats"]), _counter(f["modes"]),
                         f"{f['width']['median']}x{f['height']['median']}",
                         f"{f['width']['min']}-{f['width']['max']} x {f['height']['min']}-{f['height']['max']}",
                         f"{f['aspect']['median']} ({f['aspect']['min']}-{f['aspect']['max']})",
                         _counter(f["jpeg_quality"]) or "-", f"{f['bytes_mean'] / 1024:.0f}"])
    doc.table(["split / class", "n", "formats", "modes", "median size", "size range", "aspect w/h", "JPEG quality",
               "KiB (mean)"], rows)
    doc.p("JPEG quality: estimated from each file's quantization tables against libjpeg's (`~q`: nearest, not exact). "
          "Images stored losslessly after a lossy step (JPEG -> PNG) show no JPEG here: the probe's block "
          "cue finds them.")
    cues = a.get("format_cues") or []
    if cues:
        facts = list(cues[0]["accuracy_by_fact"])
        doc.p("Guessing the class of a pair from one file fact alone (accuracy; chance = the pair's majority share):")
        doc.table(["pair", "n", "chance"] + facts,
                  [[" vs ".join(r["classes"]), str(r["n"]), fmt_acc(r["chance"])] +
                   [fmt_acc(r["accuracy_by_fact"][f]) for f in facts] for r in cues])


def probe_section(doc: Doc, probe: dict, level: int = 2) -> None:
    doc.h(level, "Shortcut probe")
    if probe.get("skipped"):
        doc.p(f"Skipped: {probe['skipped']}.")
        return
    s = probe["settings"]
    doc.p(f"L2 logistic regression (l2 {s['l2']}, standardised features), {probe['cv_folds']}-fold stratified "
          f"cross-validation (seed {s['seed']}), on {probe['n']} images. Cues: "
          + "; ".join(f"{GROUP_TITLES[g]} ({probe['features'][g]['n']} numbers)" for g in GROUPS)
          + f". All classes at once (all cues): accuracy {fmt_acc(probe['accuracy'])}, chance "
            f"{fmt_acc(probe['chance'])}.")
    doc.table(["pair", "n", "chance"] + [GROUP_TITLES[g] for g in GROUPS + ("all",)] + ["cue", "flagged"],
              [[" vs ".join(p["classes"]), str(p["n"]), fmt_acc(p["chance"])]
               + [fmt_acc(p["accuracy_by_cue"][g]) for g in GROUPS + ("all",)]
               + [p["cue"], "yes" if p["flagged"] else "no"] for p in probe["pairs"]])
    doc.p(f"Flagged: (accuracy - chance) / (1 - chance) >= {s['min_lift']} (for a balanced pair: accuracy >= "
          f"{0.5 + s['min_lift'] / 2:.2f}) and >= {s['z_min']} standard errors above chance.")


def duplicates_section(doc: Doc, a: dict) -> None:
    d, search = a["duplicates"], a["duplicate_search"]
    doc.h(2, "Duplicates")
    doc.p(f"Exact: identical decoded pixels. Near: {search['hash']}, Hamming distance <= {search['threshold']} "
          f"({search['pairs_compared']:,} pairs compared). Groups: exact {len(d['exact'])}, near {len(d['near'])}, "
          f"across classes (label conflicts) {len(d['cross_class'])}, across splits (leakage) {len(d['cross_split'])}.")
    for key, title in (("cross_split", "Across splits (leakage)"), ("cross_class", "Across classes (label conflicts)"),
                       ("exact", "Exact duplicates"), ("near", "Near duplicates")):
        if d[key]:
            rows = [[str(i + 1), " = ".join(g)] for i, g in enumerate(d[key][:MAX_GROUPS])]
            more = f" (first {MAX_GROUPS} of {len(d[key])}; all in audit.json)" if len(d[key]) > MAX_GROUPS else ""
            doc.h(3, title + more)
            doc.table(["group", "paths"], rows)


def _counter(c: dict) -> str:
    total = sum(c.values())
    return ", ".join(f"{k} {v / total:.0%}" if len(c) > 1 else str(k) for k, v in c.items())


def thumbnail(path: Path) -> str:
    with open_image(path) as im:  # the size limit and bomb checks of every decoder (images.py)
        im = im.convert("L")
        im.thumbnail((THUMB, THUMB))
        buf = io.BytesIO()
        im.save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def thumbs_html(root: Path, names: list[str], files: dict[str, str] | None = None) -> str:
    """Thumbnails of `names` (as audit.json shows them; `files` maps them back to the names on disk)."""
    e = _e
    cells = []
    for n in names:
        try:
            data = thumbnail(root / (files or {}).get(n, n))
        except (OSError, CxrError):
            continue
        cells.append(f"<figure><img src='data:image/png;base64,{data}' width='{THUMB}' alt='{e(n)}'>"
                     f"<figcaption title='{e(n)}'>{e(Path(n).name)}</figcaption></figure>")
    return "<div class='thumbs'>" + "".join(cells) + "</div>"


def _e(s) -> str:
    return html.escape(shown(s))


def to_html(doc: Doc, a: dict, root: Path, files: dict[str, str] | None = None) -> str:
    e = _e
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>cxredge audit</title>",
             f"<style>{CSS}{EXTRA_CSS}</style></head><body>"]
    for b in doc.blocks:
        if b[0] == "warn":
            parts.append(f"<div class='warn'><b>{e(b[1])}</b>: {e(b[2])}</div>")
        elif b[0] == "table":
            parts.append(table_html(b[1], b[2]))
        else:
            parts.append(block_html(b))
        if b[0] == "h" and b[2] == "Duplicates":
            parts.append(duplicate_pictures(a, root, files))
    parts.append("<h2>A few images per class</h2>")
    for c, names in (a.get("thumbnails") or {}).items():
        parts.append(f"<h3>{e(c)}</h3>" + thumbs_html(root, names, files))
    return "\n".join(parts + ["</body></html>"]) + "\n"


def table_html(headers: list[str], rows: list[list[str]]) -> str:
    e = _e
    head = "".join(f"<th>{e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(_cell(c) for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _cell(c: str) -> str:
    """Accuracies (0.xxx) get a bar: orange from 0.75 up, grey below."""
    text = _e(c)
    try:
        v = float(c)
    except ValueError:
        return f"<td>{text}</td>"
    if not (0 <= v <= 1 and "." in str(c)):
        return f"<td>{text}</td>"
    colour = "#f4b183" if v >= 0.75 else "#dde6f0"
    return (f"<td style='background:linear-gradient(90deg,{colour} {v * 100:.0f}%,transparent {v * 100:.0f}%)'>"
            f"{text}</td>")


def duplicate_pictures(a: dict, root: Path, files: dict[str, str] | None = None, limit: int = 8) -> str:
    groups = a["duplicates"]["cross_split"] + [g for g in a["duplicates"]["cross_class"]
                                                 if g not in a["duplicates"]["cross_split"]]
    if not groups:
        return ""
    out = ["<p>Duplicates across splits or classes, side by side:</p>"]
    out += [thumbs_html(root, g[:4], files) for g in groups[:limit]]
    return "".join(out)


def write_outputs(a: dict, out_dir: Path, root: Path, names: list[str] = ()) -> tuple[Path, Path, Path]:
    """Render audit.json, audit.md and audit.html, then write the three as one unit (all or none).

    `names`: the dataset's file names as on disk (Collected.names), for the thumbnails of names that
    audit.json shows escaped."""
    doc = audit_doc(a)
    files = {shown(n): n for n in names if shown(n) != n}
    paths = (out_dir / AUDIT_JSON, out_dir / AUDIT_MD, out_dir / AUDIT_HTML)
    write_files({paths[0]: json_text(a), paths[1]: to_markdown(doc, out_dir), paths[2]: to_html(doc, a, root, files)})
    return paths
