"""What grows with N in train's evaluation: the peak memory of the clinical block (edge/evaluate/validation.py ->
edge/evaluate/clinical.py's seeded bootstrap, B = 2000 resamples) on the test split sizes of benchmarks/scale/scale.py
(tracemalloc peak, numpy's allocations included). Writes benchmarks/results/scale/scale_bootstrap.json.

    python benchmarks/scale/scale_bootstrap.py
"""
from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import numpy as np

from cxredge.edge.evaluate import validation
from cxredge.edge.evaluate.clinical import Resampler

OUT = Path(__file__).resolve().parents[1] / "results" / "scale" / "scale_bootstrap.json"


def main() -> None:
    rows = []
    for n in (840, 3360, 7560):  # the test splits of the 5.6k, 20k and 50k datasets (scale.json runs)
        rng = np.random.default_rng(0)
        y, p = rng.integers(0, 4, n), rng.dirichlet(np.ones(4), n).astype(np.float32)
        tracemalloc.start()
        validation.clinical_block(y, p, ["a", "b", "c", "d"], Resampler(n))
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        rows.append({"test_images": n, "peak_mb": round(peak / 1e6, 1), "kb_per_test_image": round(peak / n / 1e3, 1)})
        print(rows[-1])
    OUT.write_text(json.dumps({"what": "tracemalloc peak of validation.clinical_block, 4 classes, B = 2000",
                               "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
