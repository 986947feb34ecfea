"""Does streaming `train` give the in-memory path's models? Compares `cxredge train` run folders made with
the same data and seed: weights (bit for bit, or the largest difference), test accuracy, macro-F1, epochs.

    # on the last in-memory commit (fa9ac79^1) and on this checkout, same machine, same seed:
    cxredge train --data D --out runs/old_s0                     # (old tree)
    cxredge train --data D --out runs/new_s0_f32                 # float32 cache (the default)
    cxredge train --data D --out runs/new_s0_f16 --cache-dtype auto
    python benchmarks/scale/same_models.py --pair s0:runs/old_s0,runs/new_s0_f32 \\
        --pair s0-float16:runs/old_s0,runs/new_s0_f16

Writes benchmarks/results/scale/<--result>.{json,md} (default same_models).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/, for common.py
from common import cpu_summary, machine_info, results_dir, save  # noqa: E402

RESULTS = results_dir(__file__)


def compare(old: Path, new: Path, variant: str) -> dict:
    from cxredge.model_file import load_keras_model

    wa = load_keras_model(old / variant / "model.keras").get_weights()
    wb = load_keras_model(new / variant / "model.keras").get_weights()
    same_shape = len(wa) == len(wb) and all(a.shape == b.shape for a, b in zip(wa, wb))
    diff = max(float(np.abs(a - b).max()) for a, b in zip(wa, wb)) if same_shape else None
    ma, mb = (json.loads((r / variant / "metrics.json").read_text()) for r in (old, new))
    epochs = [len(json.loads((r / variant / "history.json").read_text()).get("loss", []))
              if (r / variant / "history.json").is_file() else None for r in (old, new)]
    return {"variant": variant, "identical_weights": diff == 0.0, "max_weight_diff": diff,
            "accuracy": [ma["accuracy"], mb["accuracy"]], "macro_f1": [ma["macro_f1"], mb["macro_f1"]],
            "epochs": epochs, "cache_dtypes": json.loads((new / "run.json").read_text())
            .get("feature_cache", {}).get("dtypes")}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pair", action="append", required=True, help="LABEL:OLD_RUN,NEW_RUN (repeatable)")
    ap.add_argument("--variants", default="fc,one_conv,two_conv")
    ap.add_argument("--result", default="same_models")
    args = ap.parse_args(argv)
    rows = []
    for pair in args.pair:
        label, runs = pair.split(":", 1)
        old, new = (Path(p) for p in runs.split(","))
        for v in args.variants.split(","):
            rows.append({"pair": label, "old": str(old), "new": str(new), **compare(old, new, v)})
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    lines = [f"# Streaming train vs the in-memory path: the same models? ({when})", "",
             f"Both runs of a pair: `cxredge train` with the same data and seed on the same machine ({cpu_summary()}); "
             "old = the in-memory path, new = this checkout's streaming path with the feature-cache dtype shown.", "",
             "| pair | variant | new cache | weights | test accuracy old / new | macro-F1 old / new "
             "| epochs old / new |",
             "|---|---|---|---|---:|---:|---:|"]
    for r in rows:
        weights = "identical" if r["identical_weights"] else f"max diff {r['max_weight_diff']:.3g}"
        dtypes = ", ".join(sorted(set((r["cache_dtypes"] or {}).values()))) or "?"
        lines.append(f"| {r['pair']} | {r['variant']} | {dtypes} | {weights} | {r['accuracy'][0]:.4f} / "
                     f"{r['accuracy'][1]:.4f} | {r['macro_f1'][0]:.4f} / {r['macro_f1'][1]:.4f} | "
                     f"{r['epochs'][0]} / {r['epochs'][1]} |")
    save(RESULTS, args.result, {"created": when, "rows": rows, "machine": machine_info()}, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
