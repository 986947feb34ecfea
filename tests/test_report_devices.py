"""cxredge report across devices: benchmark_model text, one column per device, and the checks behind a merge."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cxredge.cli.main import app
from cxredge.errors import CxrError
from edge_fixtures import make_run

runner = CliRunner()
FIXTURE = Path(__file__).parent / "fixtures" / "benchmark_model_android_sample.txt"
# Lines as LiteRT's docs and the APK's logcat print them (ai.google.dev/edge/litert/models/measurement):
# a logcat prefix, an older tool (no "Num threads", memory delta line), a number in e-notation.
LOGCAT = """\
# device: Pixel-class phone (logcat layout)
12-02 10:00:01.100  5395  5395 I tflite  : Graph: [/data/local/tmp/two_conv_int8.tflite]
12-02 10:00:01.100  5395  5395 I tflite  : Use gpu: [1]
12-02 10:00:01.300  5395  5395 I tflite  : count=10 first=2653894 curr=2709263 min=2640862 max=3025403 \
avg=2.71985e+06 std=105101
12-02 10:00:01.300  5395  5395 I tflite  : count=50 first=14480 curr=14600 min=14301 max=15207 avg=14575.2 std=170
12-02 10:00:01.301  5395  5395 I tflite  : Inference timings in us: Init: 5685, First inference: 18535, \
Warmup (avg): 14462.3, Inference (avg): 14575.2
12-02 10:00:01.302  5395  5395 I tflite  : Peak memory footprint (MB): init=4.92969 overall=138.809
INFO: Graph: [/data/local/tmp/mobilenet.tflite]
INFO: Use xnnpack: [0]
INFO: Inference timings in us: Init: 20283, First inference: 339304, Warmup (avg): 302814, Inference (avg): 266473
"""


@pytest.fixture(scope="module")
def bench_a(edge_models, tiny_data, tmp_path_factory) -> Path:
    run = make_run(tmp_path_factory.mktemp("devices_run"), edge_models, tiny_data)
    res = runner.invoke(app, ["bench", "--run", str(run), "--runs", "3", "--warmup", "1"])
    assert res.exit_code == 0, res.output
    return run / "bench" / "test" / "bench.json"


def test_benchmark_model_fixture_is_a_latency_only_bench():
    from cxredge.edge.runtime.benchmark_model import read_bench_file

    doc = read_bench_file(FIXTURE)
    assert doc["origin"] == "benchmark_model" and doc["device"]["hostname"].startswith("SAMPLE phone")
    f32, i8 = doc["results"]
    assert (f32["model"], i8["model"]) == ("two_conv/float32", "two_conv/int8")
    assert (i8["delegate"], i8["threads"], i8["size_bytes"]) == ("xnnpack", 1, 4441840)
    lat = i8["latency_ms"]
    assert (lat["init"], lat["first"], lat["mean"], lat["median"], lat["runs"]) == (18.904, 12.647, 8.06691, 8.011, 124)
    assert lat["warmup_mean"] == 8.19077 and lat["warmup_runs"] == 61 and lat["p95"] == 8.42
    assert i8["accuracy"] is None and i8["agreement_with_float"] is None and i8["sha256"] is None
    assert i8["speedup_vs_float32"] == pytest.approx(21.18 / 8.011)
    assert i8["memory_footprint_mb"]["overall"] == 13.6211


def test_benchmark_model_logcat_and_older_layouts(tmp_path):
    from cxredge.edge.runtime.benchmark_model import read_bench_file

    (tmp_path / "phone.txt").write_text(LOGCAT)
    doc = read_bench_file(tmp_path / "phone.txt")
    gpu, plain = doc["results"]
    assert (gpu["model"], gpu["delegate"], gpu["threads"]) == ("two_conv/int8", "gpu", None)
    assert gpu["latency_ms"]["mean"] == 14.5752 and gpu["latency_ms"]["median"] is None
    assert gpu["latency_ms"]["warmup_runs"] == 10 and gpu["memory_footprint_mb"]["overall"] == 138.809
    assert (plain["model"], plain["delegate"], plain["latency_ms"]["first"]) == ("mobilenet", "none", 339.304)
    assert doc["device"]["hostname"] == "Pixel-class phone (logcat layout)"
    (tmp_path / "log.txt").write_text("Graph: [x.tflite]\nSTARTING!\n")
    with pytest.raises(CxrError, match="neither a cxredge bench.json nor LiteRT benchmark_model output"):
        read_bench_file(tmp_path / "log.txt")


def variant(doc: dict, **device) -> dict:
    out = copy.deepcopy(doc)
    out["device"].update(**device)
    return out


def write(path: Path, doc: dict) -> Path:
    path.write_text(json.dumps(doc))
    return path


def test_report_flags_same_name_other_model_or_dataset(bench_a, tmp_path):
    """Issue 15's trap: rows merged by model name only. Other model bytes or other images are flagged."""
    a = json.loads(bench_a.read_text())
    b = variant(a, hostname="pi5", machine="aarch64")
    for r in b["results"]:
        if r["model"] == "two_conv/int8":
            r["sha256"] = "f" * 64  # a re-quantized model under the same name
    b["dataset"].update(n=12, images_sha256="0" * 64)  # other images (an older bench: no per-image ids)
    b["dataset"].pop("image_ids", None)
    res = runner.invoke(app, ["report", "--bench", str(bench_a), "--bench", str(write(tmp_path / "b.json", b)),
                              "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    md = (tmp_path / "report.md").read_text()
    assert "MISMATCH: two_conv/int8: model sha256 differs between devices ([1] " in md
    assert "MISMATCH: fc/float32: [2] other images than [1]: accuracy not comparable" in md
    assert "across devices: two_conv/int8: model sha256 differs" in res.output.replace("\n", " ")


def test_report_across_devices_checks_predictions_and_adds_phone(bench_a, tmp_path):
    a = json.loads(bench_a.read_text())
    same = variant(a, hostname="pi4", machine="aarch64", cpu_governor="performance",
                   throttled={"raw": "0x0", "flags": []}, temperature_c={"cpu-thermal": 48.3})
    flipped = variant(a, hostname="pi5", machine="aarch64")
    pred = flipped["models"]["fc/int8"]["predicted"].split()
    pred[3] = str((int(pred[3]) + 1) % 4)
    flipped["models"]["fc/int8"]["predicted"] = " ".join(pred)
    files = [bench_a, write(tmp_path / "pi4.json", same), write(tmp_path / "pi5.json", flipped), FIXTURE]
    res = runner.invoke(app, ["report", *[x for f in files for x in ("--bench", str(f))], "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    md = (tmp_path / "report.md").read_text()
    assert "| governor | - | performance | - | - |" in md and "| throttling | - | none (0x0) | - | - |" in md
    assert "[2] identical predictions on all 16 images; [3] 1 of 16 predictions differ from [1]" in md
    assert "MISMATCH: fc/int8: [3] 1 of 16 predictions differ from [1]" in md
    assert md.count("MISMATCH") == 1  # the other models agree on every device
    across = md.split("### Latency")[1]
    row = next(ln for ln in across.splitlines() if ln.startswith("| two_conv/int8 | xnnpack | 1 |"))
    assert row.endswith("| 8.01 |") and row.count("|") == 8  # 4 device columns; the phone's: its median
    speed = next(ln for ln in md.split("### Speed-up")[1].splitlines() if ln.startswith("| two_conv/int8 |"))
    assert speed.endswith("| 2.64x |")
    assert (tmp_path / "report_assets" / "compare_latency.png").is_file()
    assert (tmp_path / "report_assets" / "compare_speedup.png").is_file()
