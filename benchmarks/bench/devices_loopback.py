"""`cxredge bench --remote` over loopback SSH against a local `cxredge bench` of the same models, same machine.

The same models (default: a run's two_conv float32 + int8) and the same test images are benched
here and through a throw-away OpenSSH server on 127.0.0.1 (tests/loopback_sshd.py: fresh host and
user keys, BatchMode, host key checked), in the order local, ssh, ssh, local, back to back. Expected:
equal accuracy rows (the same images, the same predictions image by image) and a remote/local
latency ratio near 1 (same CPU; the SSH transport is idle while the device times its invokes).

    flock /tmp/cxredge-heavy.lock python benchmarks/bench/devices_loopback.py --run RUN \
        --out benchmarks/results/bench/devices

Writes OUT/local/ (round 1, here), OUT/ssh_loopback/ (round 2, over SSH), OUT/loopback.json and
OUT/loopback.md (all four rounds, the ratios, the checks, the machine).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/, for common.py
from common import ROOT as REPO  # noqa: E402
from common import cli, cpu_summary, results_dir

sys.path.insert(0, str(REPO / "tests"))

import loopback_sshd  # noqa: E402


def summary(doc: dict) -> dict:
    return {"medians_ms": {r["model"]: r["latency_ms"]["median"] for r in doc["results"] if r["status"] == "ok"},
            "accuracy": {k: m["accuracy"] for k, m in doc["models"].items()},
            "macro_f1": {k: m["macro_f1"] for k, m in doc["models"].items()},
            "predictions_sha256": {k: m.get("predictions_sha256") for k, m in doc["models"].items()},
            "images_sha256": doc["dataset"].get("images_sha256"), "n": doc["dataset"]["n"],
            "device": {k: doc["device"].get(k) for k in ("cpu_model", "cores", "os", "python", "runtime_version")}}


def rounds(models: list[str], bench_opts: list[str], lb, work: Path) -> list[tuple[str, dict, Path]]:
    remote = ["--remote", f"loopback={lb.target}", "--ssh-config", str(lb.client_config),
              "--remote-python", sys.executable, "--remote-env", f"PYTHONPATH={REPO}"]
    done = []
    for i, kind in enumerate(("local", "ssh", "ssh", "local")):
        out = work / f"{i}_{kind}"
        print(f"round {i + 1}: {kind}", flush=True)
        cli("bench", *models, *bench_opts, "--out", str(out), *(remote if kind == "ssh" else []))
        folder = out / "devices" / "loopback" if kind == "ssh" else out
        done.append((kind, json.loads((folder / "bench.json").read_text()), folder))
    return done


def checks(done) -> dict:
    loc = [summary(d) for k, d, _ in done if k == "local"]
    rem = [summary(d) for k, d, _ in done if k == "ssh"]
    models = list(loc[0]["medians_ms"])
    per_model = {}
    for m in models:
        lm = sum(s["medians_ms"][m] for s in loc) / len(loc)
        rm = sum(s["medians_ms"][m] for s in rem) / len(rem)
        per_model[m] = {"local_median_ms": [s["medians_ms"][m] for s in loc],
                        "ssh_median_ms": [s["medians_ms"][m] for s in rem],
                        "ratio_ssh_over_local": rm / lm, "within_10pct": abs(rm / lm - 1) <= 0.10}
    first = loc[0]
    same = {"images_sha256": all(s["images_sha256"] == first["images_sha256"] for s in loc + rem),
            "accuracy": all(s["accuracy"] == first["accuracy"] for s in loc + rem),
            "macro_f1": all(s["macro_f1"] == first["macro_f1"] for s in loc + rem),
            "predictions_sha256": all(s["predictions_sha256"] == first["predictions_sha256"] for s in loc + rem)}
    return {"per_model": per_model, "equal_across_all_rounds": same, "accuracy": first["accuracy"],
            "macro_f1": first["macro_f1"], "n_images": first["n"]}


def markdown(res: dict) -> str:
    lines = ["# Loopback SSH vs local bench (same machine)", "",
             f"- CPU: {res['machine']['cpu']}, {res['machine']['cores']} cores; {res['machine']['os']}; "
             f"Python {res['machine']['python']}; started {res['started']}, {res['wall_s']:.0f} s in all",
             f"- models: {', '.join(res['models'])}; {res['checks']['n_images']} test images; "
             f"`cxredge bench {' '.join(res['bench_opts'])}`; order {', '.join(res['order'])}",
             f"- SSH: {res['ssh']}", "",
             "| model | local median ms (rounds 1, 4) | ssh median ms (rounds 2, 3) | ssh / local | within 10% | "
             "accuracy | macro F1 |",
             "|---|---|---|---:|---|---:|---:|"]
    c = res["checks"]
    for m, v in c["per_model"].items():
        lines.append(f"| {m} | {' / '.join(f'{x:.3f}' for x in v['local_median_ms'])} | "
                     f"{' / '.join(f'{x:.3f}' for x in v['ssh_median_ms'])} | {v['ratio_ssh_over_local']:.3f} | "
                     f"{'yes' if v['within_10pct'] else 'NO'} | {c['accuracy'][m]:.4f} | {c['macro_f1'][m]:.4f} |")
    eq = c["equal_across_all_rounds"]
    lines += ["", "Equal in all four rounds: " + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in eq.items()) + ".",
              "", "Files: local/bench.json (round 1), ssh_loopback/bench.json (round 2, with its `remote` block)."]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--variant", default="two_conv")
    ap.add_argument("--out", type=Path, default=results_dir(__file__) / "devices")
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    a = ap.parse_args()
    why = loopback_sshd.missing()
    if why:
        raise SystemExit(why)
    models = [str(a.run / a.variant / f"{p}.tflite") for p in ("float32", "int8")]
    bench_opts = ["--runs", str(a.runs), "--warmup", str(a.warmup)]
    t0, started = time.perf_counter(), time.strftime("%Y-%m-%d %H:%M:%S %Z")
    with tempfile.TemporaryDirectory(prefix="cxr-loopback-") as tmp:
        lb = loopback_sshd.start(Path(tmp) / "sshd")
        try:
            done = rounds(models, bench_opts, lb, Path(tmp))
        finally:
            lb.stop()
        for dest, (kind, _, folder) in ((a.out / "local", done[0]), (a.out / "ssh_loopback", done[1])):
            shutil.rmtree(dest, ignore_errors=True)
            shutil.copytree(folder, dest)
    ssh_v = subprocess.run(["ssh", "-V"], capture_output=True, text=True).stderr.strip()
    res = {"started": started, "wall_s": time.perf_counter() - t0,
           "models": [f"{a.variant}/float32", f"{a.variant}/int8"],
           "bench_opts": bench_opts, "order": ["local", "ssh", "ssh", "local"],
           "ssh": f"{ssh_v}, sshd on 127.0.0.1 (throw-away keys), cxredge bench --remote with --remote-python",
           "machine": {"cpu": cpu_summary(), "cores": len(os.sched_getaffinity(0)),
                       "os": platform.platform(), "python": platform.python_version()},
           "checks": checks(done)}
    (a.out / "loopback.json").write_text(json.dumps(res, indent=2) + "\n")
    (a.out / "loopback.md").write_text(markdown(res))
    print(markdown(res))


if __name__ == "__main__":
    main()
