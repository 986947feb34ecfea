"""The finetune recipe's ablations (val), its seeds (test), its cost on this CPU, its int8 fidelity.

Every configuration is one `cxredge train --variant finetune` (defaults = the recipe) with one lever
changed; selection reads **val** only (best epoch's val macro-F1 / accuracy), test is reported for
the seeds of the recipe and for the record. Two steps, so that long runs can be queued one at a time
under the shared lock and collected whenever they finish:

    flock /tmp/cxredge-heavy.lock .venv/bin/python benchmarks/train/finetune_sweep.py run \\
        --data DIR --out runs/ft_sweep --only recipe_s0,recipe_s1     # one train per name, skips done ones
    .venv/bin/python benchmarks/train/finetune_sweep.py collect --out runs/ft_sweep --logs /work/runs_log

`collect` writes benchmarks/results/train/finetune_sweep.json and .md: per run val and test accuracy,
macro-F1, Bacterial-vs-Viral pair accuracy, epochs, seconds per phase-2 epoch, wall time (from the
`/usr/bin/time -v` log `<logs>/<name>.log` when there is one, else `wall.json` written by `run`),
the int8 rows of `<run>/quantize.json` (`cxredge quantize --variant finetune --split test`), the CPU.
Configurations without a finished run are listed as not run.
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/, for common.py
from common import cpu_info, results_dir  # noqa: E402

RESULTS = results_dir(__file__)
# seed groups summarised as means: the first recipe, BN train without augmentation, + EMA, the current default
SEED_GROUPS = {"first recipe (light augmentation, BN train)": ("recipe_s0", "recipe_s1", "recipe_s2"),
               "no augmentation, BN train (the default before this one)": ("no_augment_s0", "no_augment_s1",
                                                                           "no_augment_s2"),
               "no augmentation, BN train + --ema 0.995": ("ema_s0", "ema_s1", "ema_s2"),
               "current default (no augmentation, --bn-mode inference)": ("bn_inference_noaug_s0",
                                                                          "bn_inference_noaug_s1",
                                                                          "bn_inference_noaug_s2")}
# name -> (extra `cxredge train` arguments, what it measures); the recipe is the defaults. Rows run while
# `--bn-mode train` was the default pin it, so they reproduce; the unrun ablations are of the current recipe.
CONFIGS = {
    # recipe_s*: the first recipe (light augmentation; the default until no_augment_s* won on val)
    "recipe_s0": (["--bn-mode", "train", "--finetune-augment", "light"],
                  "the first recipe (light augmentation), seed 0 (the ablations' reference)"),
    "recipe_s1": (["--bn-mode", "train", "--finetune-augment", "light", "--seed", "1"], "the first recipe, seed 1"),
    "recipe_s2": (["--bn-mode", "train", "--finetune-augment", "light", "--seed", "2"], "the first recipe, seed 2"),
    "bn_inference_s0": (["--finetune-augment", "light", "--bn-mode", "inference"],
                        "BatchNorm frozen on ImageNet statistics"),
    "bn_inference_budget_s0": (["--finetune-augment", "light", "--bn-mode", "inference", "--max-minutes", "13"],
                               "BN frozen, under a 13-minute budget (compare val epoch by epoch with recipe_s0)"),
    "head_mlp_s0": (["--finetune-head", "mlp"],
                    "the mlp head (Dense 1024/512/C, cxredge/train/variants.py) instead of the linear head"),
    "no_augment_s0": (["--bn-mode", "train", "--finetune-augment", "none"], "no augmentation in phase 2"),
    "no_augment_s1": (["--bn-mode", "train", "--finetune-augment", "none", "--seed", "1"],
                      "no augmentation, seed 1 (no_augment_s0 lost on val but won on test)"),
    "no_augment_s2": (["--bn-mode", "train", "--finetune-augment", "none", "--seed", "2"], "no augmentation, seed 2"),
    "ema_s0": (["--bn-mode", "train", "--finetune-augment", "none", "--ema", "0.995"],
               "no augmentation + weight EMA 0.995 (~1.6 epochs)"),
    "ema_s1": (["--bn-mode", "train", "--finetune-augment", "none", "--ema", "0.995", "--seed", "1"],
               "no augmentation + weight EMA, seed 1"),
    "ema_s2": (["--bn-mode", "train", "--finetune-augment", "none", "--ema", "0.995", "--seed", "2"],
               "no augmentation + weight EMA, seed 2"),
    "pair2_s0": (["--finetune-augment", "none", "--pair-weight", "2"],
                 "no augmentation + Bacterial/Viral images weigh 2x in the loss"),
    "bnfreeze3_s0": (["--bn-mode", "train", "--finetune-augment", "none", "--bn-freeze-blocks", "3"],
                     "no augmentation + BN statistics of the stem and blocks 1-3 frozen (int8 fidelity)"),
    "bn_inference_noaug_s0": (["--finetune-augment", "none", "--bn-mode", "inference"],
                              "BN frozen without augmentation: the int8-faithful finetune with the augmentation "
                              "choice that won"),
    "bn_inference_noaug_s1": (["--finetune-augment", "none", "--bn-mode", "inference", "--seed", "1"],
                              "BN frozen without augmentation, seed 1"),
    "bn_inference_noaug_s2": (["--finetune-augment", "none", "--bn-mode", "inference", "--seed", "2"],
                              "BN frozen without augmentation, seed 2"),
    "bn_inference_noaug_long_s0": (["--finetune-augment", "none", "--bn-mode", "inference", "--finetune-epochs", "18"],
                                   "BN frozen without augmentation, an 18-epoch schedule (seed 0 peaked at "
                                   "epoch 11 of 12)"),
    "no_smoothing_s0": (["--label-smoothing", "0"], "no label smoothing"),
    "no_weight_decay_s0": (["--weight-decay", "0"], "Adam instead of AdamW"),
    "no_warmup_s0": (["--warmup-epochs", "0"], "cosine decay without warm-up"),
    "patience4_s0": (["--bn-mode", "train", "--finetune-augment", "light", "--finetune-patience", "4"],
                     "phase-2 early stop after 4 epochs without val macro-F1 gain"),
    "blocks4_s0": (["--unfreeze-blocks", "4"], "only the last 4 blocks train (the earlier best)"),
}


def run(args) -> None:
    names = args.only.split(",") if args.only else list(CONFIGS)
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        sys.exit(f"--only {','.join(unknown)}: unknown (expected {', '.join(CONFIGS)})")
    for name in names:
        out = Path(args.out) / name
        if (out / "finetune" / "metrics.json").is_file():
            print(f"{name}: done already, skipped")
            continue
        cmd = [sys.executable, "-m", "cxredge.cli.main", "train", "--data", args.data, "--out", str(out),
               "--variant", "finetune", "--no-audit", *CONFIGS[name][0]]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True)
        (out / "wall.json").write_text(json.dumps({"wall_seconds": round(time.perf_counter() - t0, 1)}))


def wall_seconds(run_dir: Path, logs: Path | None) -> float | None:
    log = logs / f"{run_dir.name}.log" if logs else None
    if log and log.is_file():
        m = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (?:(\d+):)?(\d+):([\d.]+)",
                      log.read_text(errors="replace"))
        if m:
            return round(int(m.group(1) or 0) * 3600 + int(m.group(2)) * 60 + float(m.group(3)), 1)
    wall = run_dir / "wall.json"
    return json.loads(wall.read_text())["wall_seconds"] if wall.is_file() else None


def int8_row(run_dir: Path) -> dict | None:
    q = run_dir / "quantize.json"
    if not q.is_file():
        return None
    rows = [r for r in json.loads(q.read_text())["results"] if r["variant"] == "finetune" and r["precision"] == "int8"]
    if not rows:
        return None
    r = rows[0]
    return {k: r.get(k) for k in ("split", "n", "agreement", "disagreements", "accuracy", "accuracy_float",
                                  "macro_f1", "macro_f1_float", "delta_macro_f1", "size_bytes")}


def summarize(run_dir: Path, logs: Path | None) -> dict:
    folder = run_dir / "finetune"
    m, h = json.loads((folder / "metrics.json").read_text()), json.loads((folder / "history.json").read_text())
    run = json.loads((run_dir / "run.json").read_text())
    n1 = h["phase1_epochs"]
    p2_seconds = h["epoch_seconds"][n1:]
    return {
        "settings": {k: run["settings"].get(k)
                     for k in ("seed", "finetune_patience", "unfreeze_blocks", "bn_mode", "bn_freeze_blocks",
                               "finetune_head", "finetune_augment", "ema", "pair_weight", "label_smoothing",
                               "weight_decay", "warmup_epochs", "finetune_lr", "finetune_epochs", "batch_size")},
        "val": h.get("best_val"), "test": {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"],
                                           "pair_accuracy": m.get("pair_accuracy")},
        "per_class_recall": {c: v["recall"] for c, v in m["per_class"].items()},
        "confusion_matrix": m["confusion_matrix"], "classes": m["classes"],
        "phase1_epochs": n1, "phase2_epochs": len(p2_seconds), "best_phase2_epoch": h["best_epoch"] - n1,
        "stop_reason": h.get("stop_reason"),
        "phase2_val_accuracy": [round(v, 4) for v in h["val_accuracy"][n1:]],
        "phase2_val_macro_f1": [round(v, 4) for v in h.get("phase2_val_macro_f1", [])],
        "phase1_seconds": round(sum(h["epoch_seconds"][:n1]), 1),
        "phase2_epoch_seconds_median": round(statistics.median(p2_seconds), 1) if p2_seconds else None,
        "feature_cache_seconds": run["feature_cache_seconds"], "train_seconds": m["train_seconds"],
        "wall_seconds": wall_seconds(run_dir, logs), "int8": int8_row(run_dir), "created": run["created"],
        "devices": run["devices"]["used"], "tensorflow": run["versions"]["tensorflow"],
    }


def int8_trials(folder: Path | None) -> list[dict]:
    """`cxredge quantize` variants of one finetuned model (one subfolder each, validated on val)."""
    rows = []
    for q in sorted(folder.glob("*/quantize.json")) if folder else []:
        doc = json.loads(q.read_text())
        st = doc["settings"]
        for r in doc["results"]:
            if r["precision"] != "float32":
                rows.append({"trial": q.parent.name, "precision": r["precision"], "split": r["split"],
                             "calibration_size": st["calibration_size"],
                             "bias_correction_images": st["bias_correction_images"],
                             "float_fallback": st["float_fallback"], "agreement": r["agreement"],
                             "disagreements": r["disagreements"], "n": r["n"], "delta_macro_f1": r["delta_macro_f1"],
                             "tied_at_max": r.get("tied_at_max")})
    return rows


def seed_summaries(runs: dict) -> dict:
    return {label: summary for label, names in SEED_GROUPS.items()
            if (summary := seed_summary(runs, names)) is not None}


def seed_summary(runs: dict, names) -> dict | None:
    done = [runs[s] for s in names if s in runs]
    if not done:
        return None
    out = {"seeds_done": len(done)}
    for split in ("val", "test"):
        for key in ("accuracy", "macro_f1", "pair_accuracy"):
            vals = [r[split][key] for r in done if r[split] and r[split].get(key) is not None]
            if vals:
                out[f"{split}_{key}"] = {"mean": round(statistics.fmean(vals), 4), "min": round(min(vals), 4),
                                         "max": round(max(vals), 4),
                                         "sd": round(statistics.stdev(vals), 4) if len(vals) > 1 else None}
    return out


def collect(args) -> None:
    out, logs = Path(args.out), Path(args.logs) if args.logs else None
    runs = {name: summarize(out / name, logs) for name in CONFIGS
            if (out / name / "finetune" / "metrics.json").is_file()}
    doc = {"benchmark": "finetune_sweep", "data": args.data, "cpu": cpu_info(), "configs": {
        n: {"args": a, "measures": w} for n, (a, w) in CONFIGS.items()}, "runs": runs,
        "not_run": [n for n in CONFIGS if n not in runs], "seeds": seed_summaries(runs),
        "int8_trials": {"model": args.int8_model,
                        "rows": int8_trials(Path(args.int8_trials) if args.int8_trials else None)}}
    results = Path(args.results)
    (results / "finetune_sweep.json").write_text(json.dumps(doc, indent=1) + "\n")
    (results / "finetune_sweep.md").write_text(markdown(doc))
    print(markdown(doc))


def _f(v, digits=3) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def markdown(doc: dict) -> str:
    cpu, runs = doc["cpu"], doc["runs"]
    lines = ["# finetune recipe: ablations on val, seeds on test, cost on this CPU", "",
             f"`benchmarks/train/finetune_sweep.py`; data `{doc['data']}`; CPU **{cpu.get('model')}** "
             f"({cpu.get('cpus')} CPUs, "
             f"avx512_vnni {'yes' if cpu.get('avx512_vnni') else 'no'}), no GPU. Each row is one `cxredge train "
             "--variant finetune` with the current defaults (no augmentation, BatchNorm frozen: `--bn-mode inference`) "
             "and the listed change; rows run under earlier defaults pin them (`--bn-mode train`, `--finetune-augment "
             "light`). Val = the restored best epoch "
             "(selection); test is for the record and for the seeds. pair = Bacterial-vs-Viral pair accuracy "
             "(images of those two classes; any other prediction counts as wrong).", "",
             "| run | change | val acc | val F1 | val pair | test acc | test F1 | test pair | best / phase-2 epochs "
             "| s per phase-2 epoch | wall s |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in runs.items():
        v, t = r["val"] or {}, r["test"]
        lines.append(f"| {name} | {' '.join(doc['configs'][name]['args']) or 'recipe'} | {_f(v.get('accuracy'))} | "
                     f"{_f(v.get('macro_f1'))} | {_f(v.get('pair_accuracy'))} | {_f(t['accuracy'])} | "
                     f"{_f(t['macro_f1'])} | {_f(t['pair_accuracy'])} | {r['best_phase2_epoch']} / "
                     f"{r['phase2_epochs']} | "
                     f"{_f(r['phase2_epoch_seconds_median'], 0)} | {_f(r['wall_seconds'], 0)} |")
    for label, s in doc["seeds"].items():
        lines += ["", f"**Seeds: {label}** ({s['seeds_done']} of 3 finished), test: accuracy mean "
                  f"{_f(s['test_accuracy']['mean'], 4)} (min {_f(s['test_accuracy']['min'], 4)}, max "
                  f"{_f(s['test_accuracy']['max'], 4)}), macro-F1 mean {_f(s['test_macro_f1']['mean'], 4)}, "
                  f"pair accuracy mean {_f(s['test_pair_accuracy']['mean'], 4)}; val accuracy mean "
                  f"{_f(s['val_accuracy']['mean'], 4)}."]
    q = [(n, r["int8"]) for n, r in runs.items() if r["int8"]]
    if q:
        lines += ["", "**int8** (`cxredge quantize --variant finetune --split test`: full-integer PTQ + bias "
                  "correction, 200 calibration images):", "",
                  "| run | split | agreement with float | disagreements | float acc | int8 acc | "
                  "macro-F1 change (pt) |",
                  "|---|---|---:|---:|---:|---:|---:|"]
        for n, r in q:
            lines.append(f"| {n} | {r['split']} | {100 * r['agreement']:.2f}% | {r['disagreements']} of {r['n']} | "
                         f"{_f(r['accuracy_float'])} | {_f(r['accuracy'])} | {100 * r['delta_macro_f1']:+.2f} |")
    t = doc.get("int8_trials") or {}
    if t.get("rows"):
        lines += ["", f"**int8 levers on val** (one model: {t['model']}; `cxredge quantize --variant finetune` with "
                  "the options listed; `int8_fallback` keeps the named worst layers in float, not full-integer):", "",
                  "| model | calibration images | bias-correction images | float layers | agreement | "
                  "disagreements | macro-F1 change (pt) | uint8 ties at max |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for r in t["rows"]:
            fb = r["float_fallback"] if r["precision"] == "int8_fallback" else 0
            lines.append(f"| {r['precision']} ({r['trial']}) | {r['calibration_size']} | "
                         f"{r['bias_correction_images']} | "
                         f"{fb} | {100 * r['agreement']:.2f}% | {r['disagreements']} of {r['n']} | "
                         f"{100 * r['delta_macro_f1']:+.2f} | {r['tied_at_max']} |")
    lines += ["", "Phase-2 val macro-F1 by epoch (why each run stopped):", ""]
    lines += [f"- {n}: {', '.join(f'{v:.3f}' for v in r['phase2_val_macro_f1'])} ({r['stop_reason']})"
              for n, r in runs.items()]
    lines += ["", "Per-run phase-2 val accuracy / macro-F1 by epoch, per-class recall, confusion matrices and "
              "settings: `finetune_sweep.json`.", "",
              f"Not run (CPU time): {', '.join(doc['not_run']) or 'none'}.", ""]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="step", required=True)
    r = sub.add_parser("run")
    r.add_argument("--data", required=True)
    r.add_argument("--out", default="runs/ft_sweep")
    r.add_argument("--only", default="", help="comma list of configuration names (default: all)")
    c = sub.add_parser("collect")
    c.add_argument("--out", default="runs/ft_sweep")
    c.add_argument("--logs", default="", help="folder of `/usr/bin/time -v` logs named <run>.log")
    c.add_argument("--data", default="/work/shared/data/chest_xray_4class", help="recorded only")
    c.add_argument("--int8-trials", default="", help="folder of quantize trials of one model (<trial>/quantize.json)")
    c.add_argument("--int8-model", default="", help="what the int8 trials quantized (recorded only)")
    c.add_argument("--results", default=str(RESULTS), help="where finetune_sweep.json/.md go")
    args = p.parse_args()
    run(args) if args.step == "run" else collect(args)


if __name__ == "__main__":
    main()
