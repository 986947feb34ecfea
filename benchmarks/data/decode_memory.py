"""Peak memory of decoding one large X-ray (issue 22: a 10000x10000 image decoded to ~570 MB).

    .venv/bin/python benchmarks/data/decode_memory.py [--side 7000]

Each case runs in a fresh subprocess that reports its peak RSS (VmHWM, which exec resets) minus its RSS just before
the decode, side by side in one run:
  A  the previous decoder (main 5f9c4f2): Image.open, load, convert('RGB'), then resize to 224;
  B  cxredge now (load_image): the same pixels, resized while gray, then copied to 3 channels;
  C  a 10000x10000 gray PNG (100 MP) through the previous decoder, and D through load_image, which
     refuses it from its header (MAX_PIXELS = 60 MP) before decoding a pixel.
A and B must give identical arrays (checked). Writes benchmarks/results/data/decode_memory.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

CHILD = r"""
import hashlib, sys, numpy as np
from PIL import Image
sys.path.insert(0, sys.argv[3])
Image.MAX_IMAGE_PIXELS = None  # the previous decoder as a user would meet it past Pillow's warning
from cxredge.edge.data.images import load_image
from cxredge.errors import CxrError
def rss_mb():
    return int(open('/proc/self/statm').read().split()[1]) * 4096 / 2**20
before = rss_mb()
if sys.argv[1] == 'old':
    with Image.open(sys.argv[2]) as im:
        im.load()
        x = np.asarray(im.convert('RGB').resize((224, 224), Image.BILINEAR), dtype=np.uint8)
    out = hashlib.sha256(x.tobytes()).hexdigest()
else:
    try:
        out = hashlib.sha256(load_image(sys.argv[2]).tobytes()).hexdigest()
    except CxrError as exc:
        out = 'refused: ' + str(exc).split(': ', 1)[-1][:60]
hwm = next(int(ln.split()[1]) for ln in open('/proc/self/status') if ln.startswith('VmHWM:')) / 1024
print(hwm - before, out)
"""


def run(case: str, path: Path) -> tuple[float, str]:
    out = subprocess.run([sys.executable, "-c", CHILD, case, str(path), str(ROOT)], capture_output=True, text=True,
                         check=True).stdout.split(maxsplit=1)
    return float(out[0]), out[1].strip()


def gray_png(path: Path, side: int) -> Path:
    import numpy as np
    from PIL import Image

    yy, xx = np.mgrid[0:side, 0:side]
    Image.fromarray(((xx + yy) % 256).astype(np.uint8), "L").save(path, compress_level=1)
    return path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--side", type=int, default=7000)
    args = ap.parse_args()
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    with tempfile.TemporaryDirectory() as tmp:
        real = gray_png(Path(tmp) / "real.png", args.side)
        huge = gray_png(Path(tmp) / "huge.png", 10000)
        rows = {f"A previous decoder, {args.side}^2 gray": run("old", real),
                f"B load_image, {args.side}^2 gray": run("new", real),
                "C previous decoder, 10000^2 gray": run("old", huge),
                "D load_image, 10000^2 gray": run("new", huge)}
    keys = list(rows)
    same = rows[keys[0]][1] == rows[keys[1]][1]
    doc = {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "side": args.side,
           "identical_pixels_A_B": same,
           "peak_rss_delta_mb": {k: round(v[0], 1) for k, v in rows.items()},
           "result": {k: v[1][:100] for k, v in rows.items()},
           "ratio_B_over_A": round(rows[keys[1]][0] / rows[keys[0]][0], 3)}
    lines = ["# Decode memory (benchmarks/data/decode_memory.py)", "",
             f"CPU: {cpu} ({doc['cores']} cores, lscpu model name); Python {doc['python']}.", "",
             "| case | peak RSS over baseline, MB | result |", "|---|---:|---|"]
    lines += [f"| {k} | {v[0]:.1f} | {v[1][:70]} |" for k, v in rows.items()]
    lines += ["", f"B / A = {doc['ratio_B_over_A']:.3f}; A and B give identical pixels: {same}."]
    out = ROOT / "benchmarks" / "results" / "data"
    (out / "decode_memory.json").write_text(json.dumps(doc, indent=2) + "\n")
    (out / "decode_memory.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    assert same, "the resize-while-gray decoder changed pixels"


if __name__ == "__main__":
    main()
