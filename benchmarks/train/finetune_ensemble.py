"""The hard-pair levers that need no new finetune: logit ensembles (`cxredge ensemble`) and flip TTA.

Per seed k, one run folder `<out>/s<k>` gets a two_conv head trained with `--seed k` (cached, minutes),
then `cxredge ensemble --members two_conv,<finetune of seed k>` and `cxredge quantize --variant ensemble
--split test` (full-integer int8 with bias correction, validated against the float ensemble). The
finetunes come from benchmarks/train/finetune_sweep.py (`--finetunes runs/ft_sweep --prefix recipe_s`; a comma
list of prefixes puts one finetune per prefix into each seed's ensemble, e.g. `no_augment_s,recipe_s`).

`tta` measures horizontal-flip test-time augmentation (mean of the softmax of image and mirror) on
val and test for every model.keras named, with no cxredge code path: it is a measurement of whether
the lever wins, on val first.

    flock /tmp/cxredge-heavy.lock .venv/bin/python benchmarks/train/finetune_ensemble.py run \\
        --data DIR --finetunes runs/ft_sweep --prefix recipe_s --seeds 0,1,2 --out runs/ens
    .venv/bin/python benchmarks/train/finetune_ensemble.py tta --data DIR --models NAME=PATH,...
    .venv/bin/python benchmarks/train/finetune_ensemble.py collect --out runs/ens  # results/finetune_ensemble.{json,md}
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/, for common.py
from common import cli, cpu_info, results_dir  # noqa: E402

RESULTS = results_dir(__file__)


def run(args) -> None:
    for seed in [int(s) for s in args.seeds.split(",")]:
        out = Path(args.out) / f"s{seed}"
        finetunes = [str(Path(args.finetunes) / f"{prefix}{seed}" / "finetune") for prefix in args.prefix.split(",")]
        timing = {}
        if not (out / "two_conv" / "metrics.json").is_file():
            t0 = time.perf_counter()
            cli("train", "--data", args.data, "--out", str(out), "--variant", "two_conv", "--seed", str(seed),
                "--no-audit", capture=False)
            timing["two_conv_seconds"] = round(time.perf_counter() - t0, 1)
        t0 = time.perf_counter()
        cli("ensemble", "--run", str(out), "--members", ",".join(["two_conv", *finetunes]), capture=False)
        timing["ensemble_seconds"] = round(time.perf_counter() - t0, 1)
        t0 = time.perf_counter()
        cli("quantize", "--run", str(out), "--variant", "ensemble", "--split", "test", capture=False)
        timing["quantize_seconds"] = round(time.perf_counter() - t0, 1)
        old = json.loads((out / "timing.json").read_text()) if (out / "timing.json").is_file() else {}
        (out / "timing.json").write_text(json.dumps({**old, **timing}))


def tta(args) -> None:
    import numpy as np

    from cxredge.edge.data.dataset import load_split, scan
    from cxredge.edge.evaluate.metrics import classification_metrics
    from cxredge.keras import keras
    from cxredge.train.cache import predict
    from cxredge.train.finetune import pair_accuracy

    ds = scan(args.data, seed=0)
    splits = {s: load_split(ds, s) for s in ("val", "test")}
    rows = {}
    for item in args.models.split(","):
        name, path = item.split("=", 1)
        model = keras.models.load_model(path, compile=False)
        rows[name] = {"model": path}
        for s, data in splits.items():
            x = data.x.astype(np.float32)
            plain = predict(model, x, batch_size=32)
            flipped = predict(model, x[:, :, ::-1].copy(), batch_size=32)
            for label, p in (("plain", plain), ("flip_tta", (plain + flipped) / 2)):
                pred = p.argmax(1)
                rows[name][f"{s}_{label}"] = {
                    "accuracy": round(float((pred == data.y).mean()), 4),
                    "macro_f1": round(float(classification_metrics(data.y, pred, ds.classes)["macro_f1"]), 4),
                    "pair_accuracy": round(pair_accuracy(data.y, pred, ds.classes), 4)}
        print(name, json.dumps(rows[name]))
    (Path(args.out) / "tta.json").write_text(json.dumps(rows, indent=1))


def collect(args) -> None:
    out = Path(args.out)
    seeds = {}
    extras = [Path(e) for e in args.extra.split(",")] if args.extra else []
    for folder in sorted(out.glob("s[0-9]*")) + extras:
        m = folder / "ensemble" / "metrics.json"
        if not m.is_file():
            continue
        doc = json.loads(m.read_text())
        q = json.loads((folder / "quantize.json").read_text())["results"]
        int8 = next(r for r in q if r["variant"] == "ensemble" and r["precision"] == "int8")
        f32 = next(r for r in q if r["variant"] == "ensemble" and r["precision"] == "float32")
        seeds[folder.name] = {
            "members": doc["members"], "weights": {r["label"]: r["weight"] for r in doc["ensemble"]["members"]},
            "ensemble": {"val": doc["val"], "test": {"accuracy": doc["accuracy"], "macro_f1": doc["macro_f1"],
                                                     "pair_accuracy": doc["pair_accuracy"]},
                         "ci95_accuracy": doc["ci95"]["accuracy"]},
            "int8": {k: int8.get(k) for k in ("agreement", "disagreements", "n", "accuracy", "macro_f1",
                                               "delta_macro_f1", "size_bytes")},
            "float32_size_bytes": f32["size_bytes"], "member_files": doc["ensemble"]["members"],
            "timing": json.loads((folder / "timing.json").read_text()) if (folder / "timing.json").is_file() else {}}
    tta_path = out / "tta.json"
    doc = {"benchmark": "finetune_ensemble", "cpu": cpu_info(), "seeds": seeds,
           "tta": json.loads(tta_path.read_text()) if tta_path.is_file() else {}}
    per_seed = {k: v for k, v in seeds.items() if k not in {e.name for e in extras}}
    if per_seed:
        tests = [s["ensemble"]["test"]["accuracy"] for s in per_seed.values()]
        doc["summary"] = {"test_accuracy_mean": round(statistics.fmean(tests), 4), "test_accuracy_min": min(tests),
                          "test_accuracy_max": max(tests),
                          "test_macro_f1_mean": round(statistics.fmean(s["ensemble"]["test"]["macro_f1"]
                                                                       for s in per_seed.values()), 4),
                          "test_pair_mean": round(statistics.fmean(s["ensemble"]["test"]["pair_accuracy"]
                                                                   for s in per_seed.values()), 4),
                          "int8_agreement_min": min(s["int8"]["agreement"] for s in per_seed.values()),
                          "seeds": sorted(per_seed)}
    results = Path(args.results)
    (results / f"{args.name}.json").write_text(json.dumps(doc, indent=1) + "\n")
    (results / f"{args.name}.md").write_text(markdown(doc))
    print(markdown(doc))


def _f(v, digits=3) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def markdown(doc: dict) -> str:
    cpu = doc["cpu"]
    lines = ["# finetune + two_conv logit ensembles, and flip TTA", "",
             f"`benchmarks/train/finetune_ensemble.py`; CPU **{cpu.get('model')}** ({cpu.get('cpus')} CPUs, "
             "avx512_vnni "
             f"{'yes' if cpu.get('avx512_vnni') else 'no'}), no GPU. Per seed: the finetune of that seed "
             "(or finetunes: every one listed in the table; benchmarks/train/finetune_sweep.py) and a two_conv head "
             "trained with the same seed, averaged by "
             "`cxredge ensemble` (equal weights, mean of logits) into one model; int8 = `cxredge quantize "
             "--variant ensemble --split test` (full-integer, bias-corrected) against the float ensemble. "
             "pair = Bacterial-vs-Viral pair accuracy. Rows after the seeds (e.g. ens_all) are other member sets, "
             "listed with their members and not in the seed mean.", "",
             "| seed | model | val acc | val F1 | test acc | test F1 | test pair |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for seed, s in doc["seeds"].items():
        for label, m in s["members"].items():
            lines.append(f"| {seed} | {label} | {_f(m['val']['accuracy'])} | {_f(m['val']['macro_f1'])} | "
                         f"{_f(m['test']['accuracy'])} | {_f(m['test']['macro_f1'])} | "
                         f"{_f(m['test']['pair_accuracy'])} |")
        e = s["ensemble"]
        ci = e["ci95_accuracy"]
        lines.append(f"| {seed} | **ensemble** | {_f(e['val']['accuracy'])} | {_f(e['val']['macro_f1'])} | "
                     f"**{_f(e['test']['accuracy'])}** ({ci[0]:.3f}-{ci[1]:.3f}) | {_f(e['test']['macro_f1'])} | "
                     f"{_f(e['test']['pair_accuracy'])} |")
    if doc.get("summary"):
        sm = doc["summary"]
        lines += ["",
                  f"**Ensembles over {len(sm['seeds'])} seeds ({', '.join(sm['seeds'])}), test:** accuracy mean "
                  f"{sm['test_accuracy_mean']:.4f} "
                  f"(min {sm['test_accuracy_min']:.4f}, max {sm['test_accuracy_max']:.4f}), macro-F1 mean "
                  f"{sm['test_macro_f1_mean']:.4f}, pair accuracy mean {sm['test_pair_mean']:.4f}."]
    lines += ["", "**int8 of each ensemble** (test split):", "",
              "| seed | agreement with float | disagreements | int8 acc | macro-F1 change (pt) | int8 MB | float32 MB "
              "| seconds (two_conv train / ensemble / quantize) |",
              "|---|---:|---:|---:|---:|---:|---:|---|"]
    for seed, s in doc["seeds"].items():
        i, t = s["int8"], s["timing"]
        lines.append(f"| {seed} | {100 * i['agreement']:.2f}% | {i['disagreements']} of {i['n']} | "
                     f"{_f(i['accuracy'])} | "
                     f"{100 * i['delta_macro_f1']:+.2f} | {i['size_bytes'] / 1e6:.2f} | "
                     f"{s['float32_size_bytes'] / 1e6:.2f} | "
                     f"{t.get('two_conv_seconds', '-')} / {t.get('ensemble_seconds', '-')} / "
                     f"{t.get('quantize_seconds', '-')} |")
    if doc.get("tta"):
        lines += ["", "**Flip TTA** (mean of the softmax of the image and its mirror; accuracy / pair accuracy):", "",
                  "| model | val | val + flip | test | test + flip |", "|---|---:|---:|---:|---:|"]
        for name, r in doc["tta"].items():
            cell = lambda k: f"{r[k]['accuracy']:.4f} / {r[k]['pair_accuracy']:.4f}"  # noqa: E731
            lines.append(f"| {name} | {cell('val_plain')} | {cell('val_flip_tta')} | {cell('test_plain')} | "
                         f"{cell('test_flip_tta')} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--data", required=True)
    r.add_argument("--finetunes", default="runs/ft_sweep")
    r.add_argument("--prefix", default="recipe_s", help="finetune run name prefix(es), comma list; + the seed")
    r.add_argument("--seeds", default="0,1,2")
    r.add_argument("--out", default="runs/ens")
    t = sub.add_parser("tta")
    t.add_argument("--data", required=True)
    t.add_argument("--models", required=True, help="NAME=PATH/model.keras,...")
    t.add_argument("--out", default="runs/ens")
    c = sub.add_parser("collect")
    c.add_argument("--out", default="runs/ens")
    c.add_argument("--results", default=str(RESULTS))
    c.add_argument("--name", default="finetune_ensemble", help="results/<name>.json and .md")
    c.add_argument("--extra", default="",
                   help="more ensemble run folders (comma list), listed after the seeds, "
                        "not in the seed mean (e.g. runs/ens_all: every finetune seed + two_conv)")
    args = p.parse_args()
    {"run": run, "tta": tta, "collect": collect}[args.cmd](args)


if __name__ == "__main__":
    main()
