"""How often the OOD guard flags real X-rays, non-X-rays and harder variants; and why not the model's output.

    flock /tmp/cxredge-heavy.lock .venv/bin/python benchmarks/ood/ood_guard.py --run runs/full-ood

The run must be quantized by a cxredge with the guard (its sidecars carry `ood`). Measures, TF-free:
  1. the reference stored by `cxredge quantize` == one rebuilt here from the same val images (determinism);
  2. the share flagged of the val (by construction <= 1%), test and train splits, with the reasons;
  3. the non-X-rays of issue 11 (flat gray 6000x6000 PNG, RGBA colour PNG, CMYK JPEG, uniform noise) and
     real photos that ship with matplotlib / scikit-learn in the venv (colour and gray), when present;
  4. harder cases made from every test film: inverted, rotated 90 / 180, JPEG quality 5 / 20 (reported);
  5. the model's own output as a signal: each int8 model's top-1 probability on the non-X-rays vs its
     val distribution (the rule "flag when top-1 < the val 1st percentile");
  6. the cost: building the reference from val, and checking one image.
Writes benchmarks/results/ood/ood_guard.json and .md with the machine facts.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/, for common.py
from common import ROOT, results_dir  # noqa: E402

sys.path.insert(0, str(ROOT / "tests"))

from cxredge.edge.data.dataset import load_split, scan_recorded  # noqa: E402
from cxredge.edge.data.images import load_batch  # noqa: E402
from cxredge.edge.formats.sidecar import read_sidecar  # noqa: E402
from cxredge.edge.ood import guard as ood  # noqa: E402
from cxredge.edge.runtime.device import device_info  # noqa: E402
from cxredge.edge.runtime.interpreter import TFLiteModel, find_runtime  # noqa: E402
from cxredge.io import read_json, write_json, write_text  # noqa: E402
from ood_images import NON_XRAY, xray_variants  # noqa: E402

SITE = Path(np.__file__).resolve().parents[1]
PHOTOS = [SITE / "matplotlib/mpl-data/sample_data/grace_hopper.jpg", SITE / "sklearn/datasets/images/china.jpg",
          SITE / "sklearn/datasets/images/flower.jpg"]


def rate(ref: ood.Reference, x: np.ndarray) -> dict:
    verdicts = ref.check(x)
    flagged = [v for v in verdicts if not v.in_distribution]
    return {"n": len(verdicts), "n_flagged": len(flagged), "share": round(len(flagged) / len(verdicts), 4),
            "reasons": dict(Counter(v.reasons[0] for v in flagged).most_common())}


def make_cases(tmp: Path) -> dict[str, Path]:
    cases = {name: fn(tmp / f"{i}{'.jpg' if 'JPEG' in name else '.png'}")
             for i, (name, fn) in enumerate(NON_XRAY.items())}
    for p in PHOTOS:
        if p.is_file():
            cases[f"photo {p.name} (colour)"] = p
            gray = tmp / f"gray_{p.stem}.png"
            Image.open(p).convert("L").save(gray)
            cases[f"photo {p.name} (gray)"] = gray
    return cases


def output_signal(run: Path, val_x: np.ndarray, cases: dict[str, np.ndarray]) -> dict:
    """Per int8 model: val top-1 probability percentiles, and each case's class, probability, percentile."""
    out = {}
    for model_path in sorted(run.glob("*/int8.tflite")):
        labels = read_sidecar(model_path)["labels"]
        m = TFLiteModel(model_path)
        top = m.predict_proba(val_x).max(axis=1)
        q01 = float(np.quantile(top, 0.01))
        rows = {}
        for name, x in cases.items():
            p = m.predict_proba(x[None])[0]
            rows[name] = {"label": labels[int(p.argmax())], "top1": round(float(p.max()), 3),
                          "val_percentile": round(100 * float((top < p.max()).mean()), 1),
                          "flagged_by_top1_rule": bool(p.max() < q01)}
        out[model_path.parent.name] = {"val_top1_q01": round(q01, 3),
                                       "val_top1_median": round(float(np.median(top)), 3),
                                       "cases": rows}
    return out


def harder(ref: ood.Reference, paths: list[Path], tmp: Path) -> dict:
    made: dict[str, list[Path]] = {}
    for p in paths:
        for name, q in xray_variants(p, tmp / "variants").items():
            made.setdefault(name, []).append(q)
    return {name: rate(ref, load_batch(ps)) for name, ps in made.items()}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", type=Path, default=ROOT / "runs" / "full-ood")
    ap.add_argument("--out", type=Path, default=results_dir(__file__))
    a = ap.parse_args()
    side = read_sidecar(a.run / "two_conv" / "int8.tflite")
    stored, why = ood.reference_from_dict((side or {}).get("ood"))
    if stored is None:
        sys.exit(f"{a.run}: two_conv/int8.json has no usable ood reference ({why}); re-run cxredge quantize")
    ds = scan_recorded(read_json(a.run / "run.json")["data"])
    splits = {s: load_split(ds, s) for s in ("val", "test", "train")}
    t0 = time.perf_counter()
    rebuilt = ood.build_reference(splits["val"].x)
    build_s = time.perf_counter() - t0
    same = rebuilt.to_dict() == side["ood"]
    t0 = time.perf_counter()
    rates = {s: rate(stored, part.x) for s, part in splits.items()}
    check_ms = (time.perf_counter() - t0) * 1000 / sum(len(part.y) for part in splits.values())
    with tempfile.TemporaryDirectory() as tmp:
        files = make_cases(Path(tmp))
        images = {k: load_batch([p])[0] for k, p in files.items()}
        cases = {k: stored.check(x)[0].to_dict() for k, x in images.items()}
        hard = harder(stored, splits["test"].paths, Path(tmp))
    signal = output_signal(a.run, splits["val"].x, images)
    doc = {"run": str(a.run), "device": device_info(find_runtime()), "reference": side["ood"],
           "stored_equals_rebuilt": same, "build_s_val": round(build_s, 2), "check_ms_per_image": round(check_ms, 2),
           "splits": rates, "non_xrays": cases, "harder": hard, "output_signal": signal}
    write_json(a.out / "ood_guard.json", doc)
    write_text(a.out / "ood_guard.md", markdown(doc))
    print(markdown(doc))
    return 0


def markdown(doc: dict) -> str:
    ref, d = doc["reference"], doc["device"]
    lines = ["# OOD guard: what it flags (benchmarks/ood/ood_guard.py)", "",
             f"Run `{doc['run']}`; reference from the {ref['split']} split ({ref['n']} images), threshold "
             f"{ref['threshold']:.2f} (keeps {100 * ref['keep']:.0f}%); the sidecar's reference equals "
             f"one rebuilt from "
             f"the same images: {doc['stored_equals_rebuilt']}. Building it: {doc['build_s_val']} s; checking: "
             f"{doc['check_ms_per_image']} ms per image (decoded 224x224 input).", "",
             "## Real X-rays (chest_xray_4class)", "", "| split | images | flagged | share | reasons |",
             "|---|---:|---:|---:|---|"]
    lines += [f"| {s} | {r['n']} | {r['n_flagged']} | {100 * r['share']:.2f}% | {_reasons(r['reasons'])} |"
              for s, r in doc["splits"].items()]
    lines += ["", "## Not chest X-rays", "", "| input | flagged | score | reasons |", "|---|---|---:|---|"]
    lines += [f"| {k} | {'yes' if not v['in_distribution'] else '**no**'} | {v['score']:.1f} | "
              f"{'; '.join(v['reasons'])} |"
              for k, v in doc["non_xrays"].items()]
    lines += ["", "## Harder cases, from every test film (reported, not necessarily to be flagged)", "",
              "| variant | images | flagged | share | reasons |", "|---|---:|---:|---:|---|"]
    lines += [f"| {k} | {r['n']} | {r['n_flagged']} | {100 * r['share']:.1f}% | {_reasons(r['reasons'])} |"
              for k, r in doc["harder"].items()]
    lines += ["", "## The model's own output is no guard", "",
              "Top-1 probability of each int8 model on the inputs above, and where it falls in that model's val "
              "distribution. The rule 'flag when top-1 is below the val 1st percentile' flags what is marked.", "",
              "| input | " + " | ".join(doc["output_signal"]) + " |", "|---|" + "---|" * len(doc["output_signal"])]
    for k in doc["non_xrays"]:
        cells = [f"{m['cases'][k]['label']} {m['cases'][k]['top1']:.2f} (val pct {m['cases'][k]['val_percentile']:.0f})"
                 + (" flagged" if m["cases"][k]["flagged_by_top1_rule"] else "") for m in doc["output_signal"].values()]
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    lines += ["", f"Machine: {d.get('cpu_model')} ({d.get('machine')}, {d.get('cores')} cores), {d.get('os')}, "
              f"Python {d.get('python')}, numpy {d.get('numpy')}, {d.get('runtime')} {d.get('runtime_version')}."]
    return "\n".join(lines) + "\n"


def _reasons(r: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in r.items()) or "-"


if __name__ == "__main__":
    sys.exit(main())
