"""cxredge report: one self-contained HTML page (images base64-embedded) and a Markdown twin. TF-free.

Sections: the run (data, classes, settings), the variant table in the study's format next to the study's
numbers, training curves and confusion matrices, the float / int8 / QAT table from the sidecars'
`validation`, and the bench tables and plots; several bench.json files (a laptop, a Pi, a phone's
benchmark_model text) are merged into one side-by-side comparison (report_devices.py). Plots that are missing
on disk are drawn with matplotlib when it is installed; without it the report still has every table and says
which figures were left out.
"""
from __future__ import annotations

from pathlib import Path

from cxredge.edge.bench.results import fmt, noisy
from cxredge.edge.data.sources import run_models
from cxredge.edge.formats.sidecar import read_sidecar
from cxredge.edge.render import plots as P
from cxredge.edge.render.document import Doc, to_html, to_markdown
from cxredge.edge.report.audit import audit_section
from cxredge.edge.report.clinical import clinical_blocks, dataset_label, datasets_section
from cxredge.edge.report.devices import bench_summary, devices_section, heading
from cxredge.edge.report.saliency import saliency_section
from cxredge.edge.report.summary import build_card
from cxredge.errors import CxrError
from cxredge.formats import METRICS_JSON, RUN_JSON
from cxredge.io import read_json, write_text
from cxredge.vocab import VARIANTS, order_key

# Test accuracy reported by the transfer-learning study cxredge builds on (MobileNet v1, 4 classes).
STUDY_ACCURACY = {"fc": 0.865, "one_conv": 0.434, "two_conv": 0.878}
ASSETS = "report_assets"


def variant_dirs(run_dir: Path) -> list[Path]:
    dirs = [d for d in run_dir.iterdir() if d.is_dir() and (d / METRICS_JSON).is_file()] if run_dir.is_dir() else []
    return sorted(dirs, key=lambda d: (order_key(VARIANTS, d.name), d.name))


def run_section(doc: Doc, run_dir: Path, assets: Path) -> None:
    run = read_json(run_dir / RUN_JSON) if (run_dir / RUN_JSON).is_file() else {}
    data = run.get("data") or {}
    doc.h(2, "The run")
    doc.p(f"Run folder `{run_dir}`; classes {', '.join(run.get('classes') or data.get('classes') or [])}; "
          f"MobileNet v1 alpha {run.get('alpha', '?')}, weights {run.get('weights', '?')}, seed "
          f"{run.get('seed', '?')}; "
          f"data `{data.get('path', '?')}` ({data.get('layout', '?')}).")
    counts = data.get("counts") or {}
    if counts:
        classes = list(next(iter(counts.values())).keys())
        doc.table(["split"] + classes + ["total"],
                  [[s] + [str(c.get(k, 0)) for k in classes] + [str(sum(c.values()))] for s, c in counts.items()])
    dirs = variant_dirs(run_dir)
    if not dirs:
        doc.notes.append(f"{run_dir}: no <variant>/metrics.json: training tables left out")
        return
    doc.h(2, "Variants: test metrics of the Keras float model (study's format)")
    rows = []
    for d in dirs:
        m = read_json(d / METRICS_JSON)
        study = STUDY_ACCURACY.get(d.name)
        ci = (m.get("ci95") or {}).get("accuracy")
        rows.append([d.name, fmt(m.get("accuracy")), fmt(study), fmt(m.get("macro_f1")),
                     fmt(m.get("macro_precision")), fmt(m.get("macro_recall")), fmt(m.get("weighted_f1")),
                     f"{ci[0]:.3f}-{ci[1]:.3f}" if ci else "-", fmt(m.get("macro_auc")), fmt(m.get("ece"))])
    doc.table(["variant", "accuracy", "study accuracy", "F1 (macro)", "precision (macro)", "recall (macro)",
               "weighted F1", "accuracy 95% CI", "macro AUC", "ECE"], rows)
    doc.p("Study accuracy: the numbers reported by the transfer-learning study this project builds on "
          "(fc 0.865, one_conv 0.434, two_conv 0.878), for reference; different data and split, not a "
          "paired comparison.")
    figures(doc, dirs, assets)


def figures(doc: Doc, dirs: list[Path], assets: Path) -> None:
    plt = None
    doc.h(2, "Training curves and confusion matrices")
    for d in dirs:
        curves, confusion = d / "curves.png", d / "confusion.png"
        if not curves.is_file() and (d / "history.json").is_file():
            plt = plt or P.matplotlib_pyplot()
            curves = P.curves_plot(plt, read_json(d / "history.json"), d.name,
                                   assets / f"{d.name}_curves.png") if plt else None
        if not confusion.is_file():
            plt = plt or P.matplotlib_pyplot()
            m = read_json(d / METRICS_JSON)
            confusion = (P.confusion_plot(plt, m["confusion_matrix"], m["classes"], f"{d.name} (test)",
                                          assets / f"{d.name}_confusion.png") if plt else None)
        trained = (d / "history.json").is_file() or (d / "curves.png").is_file()  # an ensemble has no curves
        if (trained and curves is None) or confusion is None:
            doc.notes.append(f"{d.name}: some figures missing ({P.MISSING})")
        if trained:
            doc.img(curves, f"{d.name}: loss and accuracy per epoch", root=own(curves, assets, d))
        doc.img(confusion, f"{d.name}: confusion matrix on the test split (rows = true class)",
                root=own(confusion, assets, d))


def own(path: Path | None, assets: Path, d: Path) -> Path | None:
    """None (drawn by this report: no check) for a figure in the report's assets, else the run's folder."""
    return None if path is None or path.parent == assets else d


def quant_section(doc: Doc, run_dir: Path) -> None:
    rows = []
    for path in run_models(run_dir) if run_dir.is_dir() else []:
        side = read_sidecar(path) or {}
        v = side.get("validation") or {}
        rows.append([path.parent.name, path.stem, f"{path.stat().st_size / 1e6:.2f}", str(v.get("split", "-")),
                     str(v.get("n", "-")), fmt(v.get("agreement")), fmt(v.get("macro_f1_float")),
                     fmt(v.get("macro_f1")),
                     fmt(v.get("delta_macro_f1"), "+.3f"), fmt(v.get("max_abs_dprob"))])
    if rows:
        doc.h(2, "Float vs quantized (from each model's sidecar validation)")
        doc.table(["variant", "precision", "MB", "split", "n", "agreement", "macro F1 float", "macro F1",
                   "delta F1", "max |dprob|"], rows)


def bench_section(doc: Doc, benches: list[tuple[Path, dict]], assets: Path) -> None:
    if not benches:
        return
    doc.h(2, "On-device benchmark")
    for path, b in benches:
        doc.h(3, device_name(b) + (f" on {dataset_label(b)}" if b.get("dataset", {}).get("n") else ""))
        doc.p(bench_summary(path, b))
        doc.table(["model", "delegate", "threads", "MB", "accuracy", "macro F1", "agree fp32", "init ms", "first ms",
                   "median ms", "p90 ms", "p99 ms", "vs fp32", "status"],
                  [bench_cells(r, b["results"]) for r in b["results"]])
        if any(noisy(r) for r in b["results"]):
            doc.p("NOISY latency: p90/median > 1.5 even after one re-measurement (another process shared the CPU); "
                  "such rows give no speed-up (vs fp32 '-'). " + machine_load_text(b))
        for name in b.get("plots") or []:
            if name.startswith("bench_"):
                doc.img(path.parent / name, f"{device_name(b)}: {name}", root=path.parent)
        clinical_blocks(doc, path, b, assets)  # cxredge/edge/report/clinical.py
    if len({heading(b) for _, b in benches}) > 1:  # several devices: compared (and mismatches flagged)
        devices_section(doc, benches, assets)  # cxredge/edge/report/devices.py
    # one device on several datasets: the Internal vs external section (report_clinical.py) compares them


def device_name(b: dict) -> str:
    return heading(b)


def bench_cells(r: dict, rows: list[dict] | None = None) -> list[str]:
    lat = r.get("latency_ms") or {}
    s = None if noisy(r) or float_noisy(r, rows or []) else r.get("speedup_vs_float32")
    mb = r["size_bytes"] / 1e6 if r.get("size_bytes") is not None else None
    return [r["model"], Path(r["delegate"]).name, str(r["threads"]), fmt(mb, ".2f"),
            fmt(r.get("accuracy")), fmt(r.get("macro_f1")), fmt(r.get("agreement_with_float")),
            fmt(lat.get("init"), ".1f"),
            fmt(lat.get("first"), ".2f"), fmt(lat.get("median"), ".2f"), fmt(lat.get("p90"), ".2f"),
            fmt(lat.get("p99"), ".2f"), f"{s:.2f}x" if s else "-",
            ("ok, NOISY latency" if noisy(r) else "ok") if r["status"] == "ok" else f"failed: {r.get('error')}"]


def float_noisy(r: dict, rows: list[dict]) -> bool:
    """Whether the float32 row a speed-up of `r` is measured against is noisy."""
    return any(noisy(f) for f in rows if f.get("precision") == "float32" and f.get("variant") == r.get("variant")
               and f.get("delegate") == r.get("delegate") and f.get("threads") == r.get("threads"))


def build(run_dir: Path | None, benches: list[tuple[Path, dict]], assets: Path,
          warnings: list[str] | None = None) -> Doc:
    doc = Doc(warnings=list(warnings or []))
    doc.h(1, "cxredge report")
    card_at = len(doc.blocks)
    datasets_section(doc, benches, assets)  # internal vs external first, when benches span datasets
    audit = None
    if run_dir is not None:
        run_section(doc, run_dir, assets)
        audit = audit_section(doc, run_dir)
        quant_section(doc, run_dir)
        saliency_section(doc, run_dir)
    bench_section(doc, benches, assets)
    if doc.notes:
        doc.h(2, "Notes")
        for n in doc.notes:
            doc.p(n)
    run = read_run_json(run_dir)
    card = build_card(benches, audit, run, doc.warnings, short_device)
    doc.blocks[card_at:card_at] = [("card", card), ("toc",)]
    return doc


def read_run_json(run_dir: Path | None) -> dict:
    try:
        run = read_json(run_dir / RUN_JSON) if run_dir is not None and (run_dir / RUN_JSON).is_file() else {}
    except CxrError:
        return {}
    return run if isinstance(run, dict) else {}


def short_device(b: dict) -> str:
    """'host / dataset' of a bench, for the summary card."""
    d, ds = b.get("device") or {}, b.get("dataset") or {}
    host = str((b.get("remote") or {}).get("label") or d.get("hostname") or "?")
    return f"{host} / {ds['name']}" if ds.get("name") else host


def machine_load_text(b: dict) -> str:
    load = (b.get("machine_load") or {}).get("before") or {}
    avg = load.get("loadavg")
    if not isinstance(avg, list) or not avg:
        return "This bench recorded no load average."
    return (f"Load average at the start: {avg[0]} on {load.get('cores')} cores; governor "
            f"{load.get('cpu_governor') or 'not readable'}.")


def write_report(out_dir: Path, run_dir: Path | None, benches: list[tuple[Path, dict]],
                 warnings: list[str] | None = None) -> tuple[Path, Path, Doc]:
    assets = out_dir / ASSETS
    assets.mkdir(parents=True, exist_ok=True)
    doc = build(run_dir, benches, assets, warnings)
    html_path = write_text(out_dir / "report.html", to_html(doc))
    md_path = write_text(out_dir / "report.md", to_markdown(doc, out_dir))
    if not any(assets.iterdir()):
        assets.rmdir()
    return html_path, md_path, doc
