"""The measurements behind the audit's thresholds, on a real dataset (default chest_xray_4class).

1. Near-duplicate threshold: the pHash distance of every image pair (all n(n-1)/2), next to the
   distance between an image and an edited copy of itself (re-encoded, brightened, cropped, ...), and
   to the pairs the dataset's maker called near duplicates (zero-mean 32x32 thumbnail correlation >
   0.975, SOURCE.md). The threshold sits in the gap between edited copies and distinct films.
2. Shortcut thresholds: the probe's accuracy where nothing should separate the classes (labels
   shuffled; one class cut into two random halves: same source, same disease), and on a same-source
   pair that differs by disease (Viral vs Bacterial pneumonia, both Kermany), next to the real pairs.
   Also the L2 strength's effect.

    nice -n 10 .venv/bin/python benchmarks/audit/audit_thresholds.py [--data DIR]

Writes benchmarks/results/audit/audit_thresholds.json and .md (machine info inside). Nothing here is a
timing claim (benchmarks/audit/audit_speed.py times the audit), so it need not hold the heavy-work lock.
"""
from __future__ import annotations

import argparse
import io
import platform
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from cxredge.edge.audit import blas, logreg
from cxredge.edge.audit import facts as F
from cxredge.edge.audit import features as FE
from cxredge.edge.audit.duplicates import NEAR_THRESHOLD, hamming_pairs
from cxredge.edge.audit.probe import MIN_LIFT, Z_MIN, ProbeSettings, flagged
from cxredge.edge.audit.run import Collected, dataset_items, rel_name
from cxredge.edge.data.dataset import scan
from cxredge.edge.runtime.device import device_info

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/, for common.py
from common import DEFAULT_DATA, results_dir, save  # noqa: E402

RESULTS = results_dir(__file__)

GROUPS = FE.GROUPS + ("all",)


def edits(work: np.ndarray, rng) -> dict[str, np.ndarray]:
    im = Image.fromarray(work)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=50)
    x = work.astype(np.float64)
    out = {"JPEG q50 re-encode": np.asarray(Image.open(buf)), "brightness +10": x + 10,
           "contrast x1.15": (x - 128) * 1.15 + 128, "Gaussian noise sd 3": x + rng.normal(0, 3, x.shape),
           "down to 160 px and back": np.asarray(im.resize((160, 160), Image.BILINEAR).resize((224, 224),
                                                                                              Image.BILINEAR)),
           "crop 4% per side": np.asarray(im.crop((9, 9, 215, 215)).resize((224, 224), Image.BILINEAR)),
           "rotate 2 degrees": np.asarray(im.rotate(2, resample=Image.BILINEAR)),
           "shift 5 px": np.roll(work, 5, axis=1)}
    return {k: np.clip(v, 0, 255).astype(np.uint8) for k, v in out.items()}


def hash_study(rows: Collected, thumbs: np.ndarray, works: list[np.ndarray], labels, args) -> dict:
    hashes = np.stack(rows.hashes)
    i, j, d = hamming_pairs(hashes, 80)
    per_distance = np.bincount(d, minlength=81)
    z = thumbs - thumbs.mean(1, keepdims=True)
    z /= np.linalg.norm(z, axis=1, keepdims=True) + 1e-12
    corr_pairs = []
    for s in range(0, len(z), 512):
        c = z[s:s + 512] @ z.T
        r, k = np.nonzero(c > 0.975)
        corr_pairs += [(s + a, b, float(c[a, b])) for a, b in zip(r, k) if s + a < b]
    corr_dist = sorted(int(hamming(hashes[a], hashes[b])) for a, b, _ in corr_pairs)
    rng = np.random.default_rng(args.seed)
    pick = rng.choice(len(works), min(args.edits, len(works)), replace=False)
    edit_dist: dict[str, list[int]] = {}
    for k in pick:
        for name, img in edits(works[k], rng).items():
            edit_dist.setdefault(name, []).append(int(hamming(FE.phash(img), hashes[k])))
    pair_corr = np.einsum("ij,ij->i", z[i], z[j]) if len(i) else np.zeros(0)
    under = {t: {"pairs": int((d <= t).sum()), "min_correlation": round(float(pair_corr[d <= t].min()), 3)
                 if (d <= t).any() else None, "cross_class": int((labels[i] != labels[j])[d <= t].sum())}
             for t in (16, 24, 32, 40, 46, 50, 56, 64)}
    n = len(hashes)
    return {"pairs": n * (n - 1) // 2, "pairs_per_distance_0_80": per_distance.tolist(),
            "threshold": NEAR_THRESHOLD, "pairs_at_or_under": under,
            "edited_copies": {k: {"n": len(v), "median": float(np.median(v)), "q95": float(np.quantile(v, 0.95)),
                                  "max": int(max(v))} for k, v in edit_dist.items()},
            "maker_near_duplicates": {"n": len(corr_pairs), "distances": corr_dist}}


def hamming(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.unpackbits((a ^ b).view(np.uint8)).sum())


def cv_acc(x, y, folds, seed, l2) -> float:
    return float((logreg.cross_val_predict(x, y, 2, folds, seed, l2) == y).mean())


def group_accs(cues: dict, sel: np.ndarray, y: np.ndarray, seed: int, l2: float = 1e-2) -> dict:
    return {g: cv_acc(cues[g][sel], y, 5, seed, l2) for g in GROUPS}


def probe_study(rows: Collected, classes, args) -> dict:
    cues = {g: np.stack(v) for g, v in rows.cues.items()}
    cues["all"] = np.hstack([cues[g] for g in FE.GROUPS])
    labels = np.array(rows.labels)
    rng = np.random.default_rng(args.seed)
    out: dict = {"real_pairs": [], "shuffled": {}, "random_halves": [], "l2": {}}
    for a in range(len(classes)):
        for b in range(a + 1, len(classes)):
            sel = np.flatnonzero((labels == a) | (labels == b))
            y = (labels[sel] == b).astype(np.int64)
            out["real_pairs"].append({"classes": [classes[a], classes[b]], "n": len(sel),
                                      "accuracy": group_accs(cues, sel, y, args.seed)})
            if a == 0 and b == 1:
                out["l2"] = {str(l2): group_accs(cues, sel, y, args.seed, l2) for l2 in (1e-3, 1e-2, 1e-1, 1.0)}
    base = np.flatnonzero((labels == 0) | (labels == 1))
    for size, reps in (item.split(":") for item in args.shuffles.split(",")):
        n, reps = (len(base) if size == "full" else int(size)), int(reps)
        runs = []
        for r in range(reps):
            sel = np.sort(rng.choice(base, n, replace=False)) if n < len(base) else base
            y = rng.permutation(np.arange(len(sel)) % 2)
            runs.append(group_accs(cues, sel, y, args.seed + r))
        out["shuffled"][str(n)] = _null_summary(runs, n)
    for c in range(len(classes)):
        idx = np.flatnonzero(labels == c)
        for r in range(args.halves):
            y = rng.permutation(np.arange(len(idx)) % 2)
            out["random_halves"].append({"class": classes[c], "n": len(idx),
                                         "accuracy": group_accs(cues, idx, y, args.seed + r)})
    return out


def _null_summary(runs: list[dict], n: int) -> dict:
    se = np.sqrt(0.25 / n)
    acc = np.array([[r[g] for g in GROUPS] for r in runs])
    z = (acc - 0.5) / se
    return {"runs": len(runs), "n": n, "binomial_se": round(float(se), 4),
            "z_quantiles": {q: round(float(np.quantile(z, float(q))), 2) for q in ("0.99", "0.999")},
            "by_cue": {g: {"mean": round(float(acc[:, k].mean()), 4), "sd": round(float(acc[:, k].std()), 4),
                           "max": round(float(acc[:, k].max()), 4),
                           "max_z": round(float((acc[:, k].max() - 0.5) / se), 2)}
                       for k, g in enumerate(GROUPS)},
            "flagged": int(sum(flagged(v, 0.5, n) for v in acc.ravel()))}


def collect(ds, args):
    rows = Collected("files")
    thumbs, works = [], []
    for split, path, label in dataset_items(ds):
        facts, native, work = F.read_image(path)
        rows.add(rel_name(ds, path), split, label, facts, native, work)
        thumbs.append(work.reshape(32, 7, 32, 7).mean(axis=(1, 3)).ravel())
        works.append(work)
    return rows, np.array(thumbs), works


def markdown(doc: dict) -> str:
    h, p = doc["hash"], doc["probe"]
    lines = [f"# Audit thresholds: the measurements ({doc['data']})", "",
             f"Machine: {doc['machine']['cpu_model']}, {doc['machine']['cores']} cores (no timing here).", "",
             "## Near duplicates: pHash (256 bits) distance", "",
             f"All {h['pairs']:,} pairs. Pairs per distance (0..80, odd distances are impossible):", "",
             "`" + " ".join(str(v) for v in h["pairs_per_distance_0_80"][::2]) + "`", "",
             "| distance <= | pairs | lowest thumbnail correlation among them | across classes |",
             "|---:|---:|---:|---:|"]
    lines += [f"| {t} | {v['pairs']} | {v['min_correlation']} | {v['cross_class']} |"
              for t, v in h["pairs_at_or_under"].items()]
    lines += ["", "An image vs an edited copy of itself:", "", "| edit | n | median | q95 | max |",
              "|---|---:|---:|---:|---:|"]
    lines += [f"| {k} | {v['n']} | {v['median']:.0f} | {v['q95']:.0f} | {v['max']} |"
              for k, v in h["edited_copies"].items()]
    m = h["maker_near_duplicates"]
    lines += ["",
              f"The dataset maker's near duplicates (correlation > 0.975): {m['n']} pairs, distances {m['distances']}.",
              f"Threshold in use: {h['threshold']}.", "", "## Shortcut probe: accuracy (5-fold CV) by cue", "",
              "| pair | n | " + " | ".join(GROUPS) + " |", "|---|---:|" + "---:|" * len(GROUPS)]
    lines[-2:] = ["| pair | n | " + " | ".join(GROUPS) + " | flagged cues |",
                  "|---|---:|" + "---:|" * len(GROUPS) + "---|"]
    lines += [f"| {' vs '.join(r['classes'])} | {r['n']} | " + " | ".join(f"{r['accuracy'][g]:.3f}" for g in GROUPS)
              + " | " + (", ".join(g for g in GROUPS if flagged(r["accuracy"][g], 0.5, r["n"])) or "none") + " |"
              for r in p["real_pairs"]]
    lines += ["", "Labels shuffled (pairs of 0 / 1 labels drawn at random; chance 0.5):", "",
              "| n | runs | binomial SE | " + " | ".join(f"{g} mean / sd / max (max z)" for g in GROUPS)
              + " | z q99 / q99.9 (every cue group) | flagged |",
              "|---:|---:|---:|" + "---|" * len(GROUPS) + "---|---:|"]
    for v in p["shuffled"].values():
        lines.append(f"| {v['n']} | {v['runs']} | {v['binomial_se']} | " + " | ".join(
            f"{c['mean']:.3f} / {c['sd']:.3f} / {c['max']:.3f} ({c['max_z']})" for c in v["by_cue"].values())
            + f" | {v['z_quantiles']['0.99']} / {v['z_quantiles']['0.999']} | {v['flagged']} |")
    null = p["shuffled"].values()
    lines += ["", f"Largest z over all {sum(v['runs'] for v in null) * len(GROUPS)} shuffled probes: "
              f"{max(c['max_z'] for v in null for c in v['by_cue'].values())}; flagged: "
              f"{sum(v['flagged'] for v in null)}."]
    halves = p["random_halves"]
    lines += ["", "One class cut into two random halves (same source, same disease):", "",
              "| class | n | " + " | ".join(GROUPS) + " |", "|---|---:|" + "---:|" * len(GROUPS)]
    lines += [f"| {r['class']} | {r['n']} | " + " | ".join(f"{r['accuracy'][g]:.3f}" for g in GROUPS) + " |"
              for r in halves]
    lines += ["", f"L2 strength, pair {' vs '.join(p['real_pairs'][0]['classes'])}:", "",
              "| l2 | " + " | ".join(GROUPS) + " |", "|---:|" + "---:|" * len(GROUPS)]
    lines += [f"| {k} | " + " | ".join(f"{v[g]:.3f}" for g in GROUPS) + " |" for k, v in p["l2"].items()]
    lines += ["", f"Thresholds in use: normalised lift >= {MIN_LIFT} and z >= {Z_MIN}.", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--edits", type=int, default=200, help="images edited for the duplicate study")
    ap.add_argument("--shuffles", default="full:20,480:200,240:300,120:500,60:1000",
                    help="pair size:label-shuffled probes, ... (full = the first pair's size)")
    ap.add_argument("--halves", type=int, default=3)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    ds = scan(args.data)
    rows, thumbs, works = collect(ds, args)
    labels = np.array(rows.labels)
    doc = {"data": args.data.name, "machine": device_info(), "python": platform.python_version(),
           "probe_settings": ProbeSettings().to_dict()}
    doc["hash"] = hash_study(rows, thumbs, works, labels, args)
    with blas.single_thread():
        doc["probe"] = probe_study(rows, ds.classes, args)
    save(args.out, "audit_thresholds", doc, markdown(doc))


if __name__ == "__main__":
    main()
