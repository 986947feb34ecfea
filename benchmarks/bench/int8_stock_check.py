"""Is int8's speed-up a property of cxredge's models or of the CPU? Stock MobileNet vs cxredge, side by side.

    flock /tmp/cxredge-heavy.lock .venv/bin/python benchmarks/bench/int8_stock_check.py [--run runs/full] [--alpha 0.75]

Builds a stock Keras MobileNet (random weights, no cxredge code, the converter's textbook full-integer
recipe with uint8 I/O), converts it to float32 and int8 TFLite, then times it and the float32/int8
models of every variant under --run in the same process, same interpreter settings (ai_edge_litert,
XNNPACK, 1 thread, median of --runs invokes after warm-up, interleaved rounds so drift hits all
models alike). Prints the float32/int8 ratio of each pair and the CPU's int8 dot-product features
(AVX-VNNI / AVX512-VNNI / AMX on x86, asimddp on Arm): without them XNNPACK's int8 kernels have no
faster multiply than its float FMA kernels.
Writes benchmarks/results/bench/int8_stock_check.json and .md.
"""
from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from cxredge.edge.runtime.device import device_info
from cxredge.edge.runtime.interpreter import TFLiteModel, find_runtime
from cxredge.io import write_json, write_text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/, for common.py
from common import cpu_flags, results_dir  # noqa: E402

RESULTS = results_dir(__file__)


def stock_models(alpha: float, out: Path) -> dict[str, Path]:
    import tensorflow as tf

    from cxredge.keras import keras

    m = keras.applications.MobileNet(alpha=alpha, weights=None, input_shape=(224, 224, 3))
    rng = np.random.default_rng(0)

    def rep():
        for _ in range(20):
            yield [rng.uniform(-1, 1, (1, 224, 224, 3)).astype(np.float32)]

    paths = {"float32": out / "stock_float32.tflite", "int8": out / "stock_int8.tflite"}
    paths["float32"].write_bytes(tf.lite.TFLiteConverter.from_keras_model(m).convert())
    c = tf.lite.TFLiteConverter.from_keras_model(m)
    c.optimizations = [tf.lite.Optimize.DEFAULT]
    c.representative_dataset = rep
    c.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    c.inference_input_type = tf.uint8
    c.inference_output_type = tf.uint8
    paths["int8"].write_bytes(c.convert())
    return paths


def time_all(models: dict[str, Path], runs: int, warmup: int, rounds: int) -> dict[str, float]:
    loaded = {k: TFLiteModel(p, threads=1, delegate="xnnpack") for k, p in models.items()}
    x = np.random.default_rng(1).integers(0, 256, (1, 224, 224, 3), dtype=np.uint8)
    samples: dict[str, list[float]] = {k: [] for k in loaded}
    for m in loaded.values():
        m.set_input(x)
        for _ in range(warmup):
            m.invoke()
    for _ in range(rounds):  # interleave: every model gets runs/rounds invokes per round
        for k, m in loaded.items():
            for _ in range(runs // rounds):
                t = time.perf_counter_ns()
                m.invoke()
                samples[k].append((time.perf_counter_ns() - t) / 1e6)
    return {k: float(np.median(v)) for k, v in samples.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, default=Path("runs/full"))
    ap.add_argument("--alpha", type=float, default=0.75)
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=4)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        models = {f"stock MobileNet a{a.alpha}/{k}": p for k, p in stock_models(a.alpha, Path(tmp)).items()}
        for p in sorted(a.run.glob("*/float32.tflite")) + sorted(a.run.glob("*/int8.tflite")):
            models[f"cxredge {p.parent.name}/{p.stem}"] = p
        med = time_all(models, a.runs, a.warmup, a.rounds)
    pairs = sorted({k.rsplit("/", 1)[0] for k in med})
    rows = [{"model": k, "float32_ms": med[f"{k}/float32"], "int8_ms": med[f"{k}/int8"],
             "speedup": med[f"{k}/float32"] / med[f"{k}/int8"]} for k in pairs
            if f"{k}/float32" in med and f"{k}/int8" in med]
    facts = device_info(find_runtime())
    doc = {"created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "device": facts,
           "int8_dot_product_flags": cpu_flags(), "python": platform.python_version(),
           "settings": {"threads": 1, "delegate": "xnnpack", "runs": a.runs, "warmup": a.warmup,
                        "rounds": a.rounds, "alpha": a.alpha, "run": str(a.run)}, "rows": rows}
    lines = [f"# int8 vs float32: stock MobileNet vs cxredge models ({doc['created']})", "",
             f"CPU: {facts.get('cpu_model')}, {facts.get('cores')} cores; int8 dot-product features: "
             f"{', '.join(doc['int8_dot_product_flags']) or 'none'}; ai_edge_litert XNNPACK, 1 thread, "
             f"median of {a.runs} invokes (interleaved in {a.rounds} rounds) after {a.warmup} warm-up.", "",
             "| model | float32 ms | int8 ms | int8 speed-up |", "|---|---:|---:|---:|"]
    lines += [f"| {r['model']} | {r['float32_ms']:.2f} | {r['int8_ms']:.2f} | {r['speedup']:.2f}x |" for r in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.mkdir(exist_ok=True)
    write_json(RESULTS / "int8_stock_check.json", doc)
    write_text(RESULTS / "int8_stock_check.md", text)


if __name__ == "__main__":
    main()
