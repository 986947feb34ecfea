"""Build the bundled sample (cxredge/data/sample) from the full chest_xray_4class set.

A developer tool, run once; nothing at run time reads ../shared. The subset is stratified (the same
number per class in every split, splits kept as in the source so no patient group crosses them) and
seeded, so re-running gives the same files.

    python tools/make_sample.py --src ../shared/data/chest_xray_4class --out cxredge/data/sample
"""
from __future__ import annotations

import argparse
import random
import shutil
from pathlib import Path

PER_CLASS = {"train": 80, "val": 20, "test": 20}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=20261125)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    for split, n in PER_CLASS.items():
        for cls_dir in sorted((args.src / split).iterdir()):
            files = sorted(cls_dir.glob("*.png"))
            picked = sorted(rng.sample(files, n))
            dst = args.out / split / cls_dir.name
            dst.mkdir(parents=True, exist_ok=True)
            for f in picked:
                shutil.copy2(f, dst / f.name)
    print(f"wrote {sum(PER_CLASS.values()) * 4} images to {args.out}")


if __name__ == "__main__":
    main()
