"""Several benches side by side (a laptop, Pis over SSH, a phone's benchmark_model run). TF-free.

What `cxredge report --bench A --bench B ...` shows: the device facts, one latency table and plot with
a column per device, the int8 speed-up per device, and the accuracy rows checked across devices.
Rows are matched by model name (variant/precision), delegate and threads, so the checks say when a
match is not the same thing:
- model bytes: the sha256 each row carries (from the model's sidecar) must agree across devices;
  different bytes under one name are flagged, never silently merged.
- images: accuracies are compared on the same labelled images: dataset.images_sha256 where both
  benches recorded it (cxredge/edge/formats/fingerprint.py), else split, n and classes. A bench whose images or
  classes differ from the first bench's is flagged once for its dataset (split, n, image set, folder),
  even where the per-image predictions agree on the images both share.
- predictions: the same model bytes on the same images must give the same top-1 class per image on
  every device. Compared image by image where both benches record per-image predictions (on the
  images they share), else by accuracy. A device that differs is flagged.
A bench that records no model sha256 (benchmark_model text) is said to be matched by name only.
Latency is the median per row; benchmark_model rows without a median show their average ("avg").
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cxredge.edge.bench.results import device_line, fmt, noisy
from cxredge.edge.formats.fingerprint import predictions_by_id
from cxredge.edge.render import plots as P
from cxredge.formats import headline_ms
from cxredge.vocab import PRECISIONS, VARIANTS, order_key


@dataclass
class Dev:
    i: int
    path: Path
    b: dict

    @property
    def tag(self) -> str:
        return f"[{self.i}]"

    @property
    def name(self) -> str:
        remote, d = self.b.get("remote") or {}, self.b["device"]
        base = remote.get("label") or d.get("hostname") or self.path.parent.name or "?"
        return f"{base} ({d.get('machine')})" if d.get("machine") else base

    @property
    def kind(self) -> str:
        if self.b.get("origin") == "benchmark_model":
            return "benchmark_model text (latency only)"
        if self.b.get("remote"):
            return f"over SSH: {self.b['remote'].get('target')}"
        return "cxredge bench"

    def rows(self):
        return self.b.get("results") or []


def row_key(r: dict) -> tuple:
    return (r["model"], Path(str(r["delegate"])).name, r["threads"])


def latency_cell(r: dict | None) -> str:
    if r is None:
        return "-"
    if r.get("status") != "ok":
        return "failed"
    lat = r.get("latency_ms") or {}
    if lat.get("median") is not None:
        return f"{lat['median']:.2f}" + (" NOISY" if noisy(r) else "")
    return f"{lat['mean']:.2f} avg" if lat.get("mean") is not None else "-"


def find(dev: Dev, key: tuple) -> dict | None:
    return next((r for r in dev.rows() if row_key(r) == key), None)


def heading(b: dict) -> str:
    """A bench's title: host (CPU, machine), with the SSH label or the benchmark_model origin."""
    d = b["device"]
    facts = ", ".join(str(x) for x in (d.get("cpu_model"), d.get("machine")) if x)
    if b.get("remote"):
        return f"{b['remote'].get('label')} over SSH: {d.get('hostname') or '?'} ({facts})"
    if b.get("origin") == "benchmark_model":
        return f"{d.get('hostname') or '?'} (LiteRT benchmark_model)"
    return f"{d.get('hostname') or '?'} ({facts})"


def bench_summary(path: Path, b: dict) -> str:
    """The sentence under each bench's heading."""
    s = b.get("settings") or {}
    if b.get("origin") == "benchmark_model":
        d = b["device"]
        return (f"`{path}`: LiteRT benchmark_model output; {d.get('hostname')}, CPU {d.get('cpu_model') or '?'}, "
                f"{d.get('os') or '?'}; latency only (random inputs, no labels: accuracy not measured); "
                f"{s.get('runs')} timed runs after {s.get('warmup')} warm-up runs (first row).")
    ds = b.get("dataset") or {}
    via = f" over SSH ({b['remote']['target']})" if b.get("remote") else ""
    note = f" Note: {b['device']['note']}." if b["device"].get("note") else ""
    return (f"`{path}`{via}: {device_line(b['device'])}; {ds.get('n')} images ({ds.get('split')}) from "
            f"{(ds.get('chosen_from') or ds).get('source')}; {s.get('runs')} timed runs after {s.get('warmup')} "
            f"warm-up.{note}")


def facts_table(doc, devs: list[Dev]) -> None:
    def cell(dev: Dev, what: str) -> str:
        d, ds = dev.b["device"], dev.b.get("dataset") or {}
        temp, thr, mhz = d.get("temperature_c"), d.get("throttled"), d.get("cpu_mhz") or {}
        value = {
            "source": dev.kind, "CPU": d.get("cpu_model"), "cores": d.get("cores"), "OS": d.get("os"),
            "Python": d.get("python"),
            "runtime": " ".join(str(x) for x in (d.get("runtime"), d.get("runtime_version")) if x),
            "cxredge": d.get("cxredge"), "temperature C (end)": f"{max(temp.values()):.0f}" if temp else None,
            "throttling": (", ".join(thr["flags"]) or f"none ({thr['raw']})") if thr else None,
            "governor": d.get("cpu_governor"), "clock MHz (cur/max)":
                f"{mhz.get('cur')}/{mhz.get('max')}" if mhz else None,
            "images": f"{ds['n']} ({ds.get('split')})"
            + (f", set {ds['images_sha256'][:10]}" if ds.get("images_sha256") else "")
                if ds.get("n") else "none (latency only)",
            "file": f"`{dev.path}`", "note": d.get("note"),
        }[what]
        return "-" if value in (None, "") else str(value)

    facts = ["source", "CPU", "cores", "OS", "Python", "runtime", "cxredge", "temperature C (end)", "throttling",
             "governor", "clock MHz (cur/max)", "images", "file", "note"]
    doc.table(["", *[f"{d.tag} {d.name}" for d in devs]], [[f, *[cell(d, f) for d in devs]] for f in facts])


def latency_keys(devs: list[Dev]) -> list[tuple]:
    """Every (model, delegate, threads) of any device: variants, then precisions, in the run's order."""
    rows: dict[tuple, dict] = {}
    for dev in devs:
        for r in dev.rows():
            rows.setdefault(row_key(r), r)

    def order(k):
        r = rows[k]
        v, p = r.get("variant"), r.get("precision")
        return (order_key(VARIANTS, v), str(v), order_key(PRECISIONS, p), str(p), k[1], k[2] or 0)
    return sorted(rows, key=order)


def latency_table(doc, devs: list[Dev], keys: list[tuple]) -> None:
    rows = [[k[0], k[1], str(k[2] if k[2] is not None else "-")] + [latency_cell(find(d, k)) for d in devs]
            for k in keys]
    doc.table(["model", "delegate", "threads", *[f"{d.tag} ms" for d in devs]], rows)


def speedup_table(doc, devs: list[Dev]) -> list[tuple]:
    keys = [k for k in latency_keys(devs) if any(trusted_speedup(d, k) for d in devs)
            and not any((find(d, k) or {}).get("precision") == "float32" for d in devs)]
    rows = []
    for k in keys:
        cells = [trusted_speedup(d, k) for d in devs]
        rows.append([k[0], k[1], str(k[2] if k[2] is not None else "-")] + [f"{s:.2f}x" if s else "-" for s in cells])
    doc.table(["model", "delegate", "threads", *[f"{d.tag} vs float32" for d in devs]], rows)
    return keys


def trusted_speedup(dev: Dev, key: tuple) -> float | None:
    """A row's speed-up over float32, or None when that row or its float32 row has noisy latency."""
    r = find(dev, key)
    if r is None or noisy(r):
        return None
    ref = next((f for f in dev.rows() if f.get("precision") == "float32" and f.get("variant") == r.get("variant")
                and row_key(f)[1:] == key[1:]), None)
    return None if ref is not None and noisy(ref) else r.get("speedup_vs_float32")


def model_sha(dev: Dev, model: str) -> str | None:
    return next((r.get("sha256") for r in dev.rows() if r["model"] == model and r.get("sha256")), None)


def sha_flags(devs: list[Dev]) -> list[str]:
    flags = []
    for model in dict.fromkeys(r["model"] for d in devs for r in d.rows()):
        shas = {d.tag: model_sha(d, model) for d in devs if model_sha(d, model)}
        if len(set(shas.values())) > 1:
            flags.append(f"{model}: model sha256 differs between devices ("
                         + ", ".join(f"{t} {s[:12]}" for t, s in shas.items())
                         + "): these rows are different models under one name, not one model on several devices")
    return flags


def same_images(a: Dev, b: Dev) -> bool | None:
    """True / False when known; None when neither set nor counts tell."""
    da, db = a.b.get("dataset") or {}, b.b.get("dataset") or {}
    if da.get("images_sha256") and db.get("images_sha256"):
        return da["images_sha256"] == db["images_sha256"]
    ka = (da.get("n"), da.get("split"), list(da.get("classes") or []))
    kb = (db.get("n"), db.get("split"), list(db.get("classes") or []))
    return None if ka == kb else False


def classes_of(dev: Dev) -> list[str]:
    return [str(c) for c in ((dev.b.get("dataset") or {}).get("classes") or [])]


def dataset_text(dev: Dev) -> str:
    """split, n, image set and folder of a bench's labelled images, for a mismatch line."""
    ds = dev.b.get("dataset") or {}
    parts = [f"split {ds.get('split')}", f"n={ds.get('n')}"]
    if ds.get("images_sha256"):
        parts.append(f"images {ds['images_sha256'][:10]}")
    folder = (ds.get("chosen_from") or {}).get("path") or ds.get("path")
    if folder:
        parts.append(f"from {folder}")
    return ", ".join(parts)


def has_accuracy(dev: Dev) -> bool:
    return any(r.get("accuracy") is not None for r in dev.rows())


def dataset_flags(devs: list[Dev]) -> list[str]:
    """Benches whose labelled images or classes differ from the first bench's: accuracies not comparable."""
    held = [d for d in devs if has_accuracy(d)]
    flags = []
    for d in held[1:]:
        ref = held[0]
        cr, cd = classes_of(ref), classes_of(d)
        if cr and cd and cr != cd:
            what = "other classes" if set(cr) != set(cd) else "its classes in another order"
            flags.append(f"dataset: {d.tag} has {what} than {ref.tag} ({', '.join(cd)} vs {', '.join(cr)}): "
                         "its rows are not the same task")
        if same_images(ref, d) is False:
            flags.append(f"dataset: {d.tag} evaluated other labelled images than {ref.tag} ({dataset_text(d)} vs "
                         f"{dataset_text(ref)}): its accuracy is not comparable")
    return flags


def unverified_notes(devs: list[Dev]) -> list[str]:
    """Benches with rows but no model sha256 (benchmark_model text): matched to the others by name only."""
    out = []
    for d in devs:
        models = {r["model"] for r in d.rows()}
        shared = models & {r["model"] for o in devs if o is not d for r in o.rows()}
        if shared and not any(r.get("sha256") for r in d.rows()):
            out.append(f"{d.tag} recorded no model sha256 ({d.kind}): its rows are matched to the other "
                       "devices' by model name only; that they are the same model bytes is not verified")
    return out


def named(pred: dict[str, int] | None, classes: list[str]) -> dict | None:
    """Predicted class indices -> class names where the bench recorded its classes (other orders compare)."""
    if pred is None or not classes:
        return pred
    return {k: classes[v] if 0 <= v < len(classes) else v for k, v in pred.items()}


def accuracy_of(dev: Dev, model: str) -> float | None:
    m = (dev.b.get("models") or {}).get(model) or {}
    if m.get("accuracy") is not None:
        return m["accuracy"]
    return next((r.get("accuracy") for r in dev.rows() if r["model"] == model and r.get("accuracy") is not None), None)


def compare(ref: Dev, dev: Dev, model: str) -> tuple[str, bool]:
    """One device's accuracy row against the reference device's: (text, consistent)."""
    sr, sd = model_sha(ref, model), model_sha(dev, model)
    if sr and sd and sr != sd:
        return f"{dev.tag} other model bytes", False
    images = same_images(ref, dev)
    pr = named(predictions_by_id(ref.b.get("dataset"), (ref.b.get("models") or {}).get(model)), classes_of(ref))
    pd = named(predictions_by_id(dev.b.get("dataset"), (dev.b.get("models") or {}).get(model)), classes_of(dev))
    if pr is not None and pd is not None:
        common = pr.keys() & pd.keys()
        if not common:
            return f"{dev.tag} no image in common with {ref.tag}", False
        diff = sum(pr[k] != pd[k] for k in common)
        if diff:
            return f"{dev.tag} {diff} of {len(common)} predictions differ from {ref.tag}", False
        if images:
            return f"{dev.tag} identical predictions on all {len(common)} images", True
        return (f"{dev.tag} identical predictions on the {len(common)} images shared with {ref.tag} "
                f"(other image set)"), True
    if images is False:
        return f"{dev.tag} other images than {ref.tag}: accuracy not comparable", False
    a, b = accuracy_of(ref, model), accuracy_of(dev, model)
    unknown = "" if images else ", image identity not recorded"
    if abs(a - b) > 1e-9:
        return f"{dev.tag} accuracy differs ({b:.4f} vs {a:.4f}{unknown})", False
    return f"{dev.tag} same accuracy (no per-image predictions recorded{unknown})", True


def accuracy_table(doc, devs: list[Dev]) -> list[str]:
    """The accuracy rows across devices and their check; returns the flags (inconsistencies)."""
    with_acc = [d for d in devs if has_accuracy(d)]
    models = list(dict.fromkeys(r["model"] for d in with_acc for r in d.rows() if r.get("accuracy") is not None))
    rows, flags = [], []
    for model in models:
        holders = [d for d in with_acc if accuracy_of(d, model) is not None]
        checks = [compare(holders[0], d, model) for d in holders[1:]]
        flags += [f"{model}: {text}" for text, ok in checks if not ok]
        sha = model_sha(holders[0], model)
        rows.append([model, sha[:12] if sha else "-"] + [fmt(accuracy_of(d, model), ".4f") for d in with_acc]
                    + ["; ".join(t for t, _ in checks) or "one device only"])
    doc.table(["model", "sha256", *[f"{d.tag} accuracy" for d in with_acc], "check (same bytes, same images)"], rows)
    return flags


def devices_section(doc, benches: list[tuple[Path, dict]], assets: Path) -> None:
    devs = [Dev(i + 1, p, b) for i, (p, b) in enumerate(benches)]
    doc.h(2, "Side by side: across devices")
    doc.p("Devices: " + "; ".join(f"{d.tag} {d.name}: {d.kind}" + (f" ({d.b['device']['note']})" if
                                   d.b["device"].get("note") else "") for d in devs) + ".")
    facts_table(doc, devs)
    keys = latency_keys(devs)
    doc.h(3, "Latency (median ms; 'avg' = benchmark_model average where it printed no median)")
    latency_table(doc, devs, keys)
    doc.h(3, "Speed-up over float32 (same device, delegate and threads; none from a NOISY row)")
    sp_keys = speedup_table(doc, devs)
    doc.h(3, "Accuracy across devices")
    flags = sha_flags(devs) + dataset_flags(devs) + accuracy_table(doc, devs)
    if flags:
        doc.h(3, "Checks that failed")
        for f in flags:
            doc.p("MISMATCH: " + f)
            doc.notes.append("across devices: " + f)
    else:
        doc.p("Checks: the same model bytes (sha256) under each name on every device that recorded it, the "
              "same labelled images and classes on every device that measured accuracy, and matching "
              "predictions wherever two devices evaluated the same images.")
    for line in unverified_notes(devs):
        doc.p("Not verified: " + line)
        doc.notes.append("across devices: " + line)
    plt = P.matplotlib_pyplot()
    if plt is None:
        doc.notes.append(f"across-devices plots left out: {P.MISSING}")
        return
    doc.img(latency_plot(plt, devs, keys, assets / "compare_latency.png"),
            "median latency per device (hatched: average)")
    if sp_keys:
        doc.img(speedup_plot(plt, devs, sp_keys, assets / "compare_speedup.png"), "speed-up over float32 per device")


def grouped_bars(plt, devs: list[Dev], keys: list[tuple], value, path: Path, ylabel: str, log: bool,
                 per_dev: bool = False) -> Path:
    import numpy as np

    fig, ax = plt.subplots(figsize=(max(6.5, 0.9 * len(keys) + 2), 4.2))
    width = 0.8 / len(devs)
    for j, dev in enumerate(devs):
        vals, hatch = zip(*((value(dev, k) if per_dev else value(find(dev, k))) for k in keys))
        bars = ax.bar(np.arange(len(keys)) + j * width - 0.4 + width / 2, [np.nan if v is None else v for v in vals],
                      width, label=f"{dev.tag} {dev.name}")
        for bar, h, v in zip(bars, hatch, vals):
            if h:
                bar.set_hatch("//")
            if v is not None:
                ax.annotate(f"{v:.0f}" if v >= 100 else f"{v:.3g}", (bar.get_x() + bar.get_width() / 2, v),
                            ha="center", va="bottom", fontsize=6)
    ax.set_xticks(range(len(keys)), [f"{k[0]} {k[1]} x{k[2]}" for k in keys], rotation=35, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
    ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    return P.save(fig, path)


def latency_plot(plt, devs, keys, path: Path) -> Path:
    def value(r):
        ms = headline_ms(r)
        return ms, ms is not None and (r.get("latency_ms") or {}).get("median") is None
    return grouped_bars(plt, devs, keys, value, path, "median latency, ms (log)", True)


def speedup_plot(plt, devs, keys, path: Path) -> Path:
    def value(dev, k):
        return trusted_speedup(dev, k), False
    return grouped_bars(plt, devs, keys, value, path, "x faster than float32 (noisy rows left out)", False,
                        per_dev=True)
