"""Issue 15's CLI traps: a bench where nothing ran exits 0, report merges rows by name only, rich eats
`[train]` from the install hint, predict --help misdescribes --json. Each test failed before its fix."""
from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cxredge.cli.main import app
from cxredge.errors import CxrError
from edge_fixtures import make_run
from tf_blocker import run_blocked

runner = CliRunner()
SAMPLE = Path(__file__).parent / "fixtures" / "benchmark_model_android_sample.txt"
BAD_DELEGATE = "/no/such/lib[gpu]delegate.so"  # brackets rich would read as a markup tag
@pytest.fixture(scope="module")
def run_dir(edge_models, tiny_data, tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("traps_run"), edge_models, tiny_data)


@pytest.fixture(scope="module")
def bench_ok(run_dir) -> Path:
    res = runner.invoke(app, ["bench", "--run", str(run_dir), "--runs", "2", "--warmup", "1"])
    assert res.exit_code == 0, res.output
    return run_dir / "bench" / "test" / "bench.json"


@pytest.fixture(scope="module")
def bench_all_failed(run_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("all_failed")
    res = runner.invoke(app, ["bench", str(run_dir / "two_conv" / "int8.tflite"), "--delegate", BAD_DELEGATE,
                              "--threads", "1,2", "--runs", "1", "--warmup", "0", "--out", str(out)])
    return res, out / "bench.failed.json"


def one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text)


# --- 1. bench where no row ran ------------------------------------------------------------------

def test_bench_exits_nonzero_when_every_row_failed(bench_all_failed):
    res, path = bench_all_failed
    assert res.exit_code == 1, res.output
    doc = json.loads(path.read_text())  # bench.failed.json records each row's error (bench.json is not replaced)
    assert [r["status"] for r in doc["results"]] == ["failed", "failed"]
    out = one_line(res.output)
    assert "error: all 2 rows failed, nothing measured (first: two_conv/int8 lib[gpu]delegate.so x1:" in out
    assert "failed two_conv/int8 /no/such/lib[gpu]delegate.so x1:" in out  # the row lines keep their brackets
    assert "Traceback" not in res.output


def test_remote_bench_exits_nonzero_when_a_device_measured_nothing(bench_ok, bench_all_failed):
    """A device that ran `cxredge bench` (an older cxredge there exits 0) with no row ok counts as failed."""
    from cxredge.cli.bench_remote import report

    ok = ("pi4", bench_ok, json.loads(bench_ok.read_text()))
    empty = ("pi5", bench_all_failed[1], json.loads(bench_all_failed[1].read_text()))
    report([ok], [], 1)  # every row ok: no error
    with pytest.raises(CxrError, match=r"^pi5: all 2 rows failed, nothing measured"):
        report([empty], [], 1)
    with pytest.raises(CxrError, match=r"^2 of 3 devices failed \(errors above\); the other 1 device\(s\) wrote"):
        report([ok, empty], ["pi3: ssh: connection refused"], 3)


# --- 2. report --bench A --bench B: same name, other model or other dataset ------------------------

def report_md(tmp_path: Path, *benches) -> tuple[str, str]:
    files = []
    for i, b in enumerate(benches):
        if isinstance(b, dict):
            b = tmp_path / f"bench_{i}.json"
            b.write_text(json.dumps(benches[i]))
        files += ["--bench", str(b)]
    res = runner.invoke(app, ["report", *files, "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    return (tmp_path / "report.md").read_text(), one_line(res.output)


def on_pi(doc: dict) -> dict:
    out = copy.deepcopy(doc)
    out["device"].update(hostname="pi5", machine="aarch64")
    return out


def test_devices_section_flags_other_image_set_even_where_predictions_agree(bench_ok, tmp_path):
    """Handed two benches of other images (the report groups benches by dataset first), the device
    comparison still flags them once for the dataset, not only per model, and in the notes."""
    from cxredge.edge.report.devices import devices_section
    from cxredge.edge.report.page import Doc

    a = json.loads(bench_ok.read_text())
    b = on_pi(a)  # the same run benched with --limit 8: a subset of the images, per-image predictions agree
    b["dataset"].update(n=8, images_sha256="0" * 64, image_ids=" ".join(a["dataset"]["image_ids"].split()[:8]))
    for m in b["models"].values():
        m["predicted"] = " ".join(m["predicted"].split()[:8])
    doc = Doc()
    devices_section(doc, [(bench_ok, a), (tmp_path / "pi.json", b)], tmp_path)
    texts = [blk[1] for blk in doc.blocks if blk[0] == "p"]
    line = "dataset: [2] evaluated other labelled images than [1] (split test, n=8, images 0000000000"
    assert any(t.startswith("MISMATCH: " + line) for t in texts), texts
    assert any(n.startswith("across devices: " + line) for n in doc.notes)
    assert any(" vs split test, n=16, images " + a["dataset"]["images_sha256"][:10] in t for t in texts)


def test_report_flags_other_classes_and_compares_predictions_by_name(bench_ok, tmp_path):
    a = json.loads(bench_ok.read_text())
    b = on_pi(a)  # the same images and answers, the classes listed in another order
    order = [3, 2, 1, 0]
    b["dataset"]["classes"] = [a["dataset"]["classes"][i] for i in order]
    for m in b["models"].values():
        m["predicted"] = " ".join(str(order.index(int(p))) for p in m["predicted"].split())
    md, out = report_md(tmp_path, bench_ok, b)
    assert "MISMATCH: dataset: [2] has its classes in another order than [1] (gamma, delta, beta, alpha vs " in md
    assert "across devices: dataset: [2] has its classes in another order" in out
    assert "predictions differ" not in md  # compared by class name, not by index
    c = on_pi(a)
    c["dataset"]["classes"] = ["alpha", "beta", "delta", "other"]
    md, _ = report_md(tmp_path, bench_ok, c)
    assert ("MISMATCH: dataset: [2] has other classes than [1] "
            "(alpha, beta, delta, other vs alpha, beta, delta, gamma)") in md


def test_report_says_rows_without_sha256_are_matched_by_name_only(bench_ok, tmp_path):
    md, out = report_md(tmp_path, bench_ok, SAMPLE)  # benchmark_model text: two_conv/float32, two_conv/int8
    assert "Not verified: [2] recorded no model sha256 (benchmark_model text (latency only)): its rows are " \
           "matched to the other devices' by model name only" in md
    assert "across devices: [2] recorded no model sha256" in out
    assert "MISMATCH" not in md
    md, _ = report_md(tmp_path, bench_ok, on_pi(json.loads(bench_ok.read_text())))
    assert "Not verified" not in md and "MISMATCH" not in md  # same bytes, same images: nothing to say


# --- 3. the install hint keeps `[train]` -----------------------------------------------------------

def test_train_without_tensorflow_prints_the_extra(tmp_path):
    res = run_blocked(tmp_path, "-m", "cxredge", "train", "--data", str(tmp_path / "none"),
                      "--out", str(tmp_path / "run"), "--weights", "none")
    assert res.returncode == 1, res.stdout + res.stderr
    assert "pip install 'cxredge[train]'" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr


def test_error_lines_are_text_not_markup():
    import typer

    from cxredge.cli.common import handle_errors

    sub = typer.Typer()

    @sub.command()
    @handle_errors
    def fail() -> None:
        raise CxrError("needs pip install 'cxredge[train]' and [bold]this[/bold] kept as typed")

    res = CliRunner().invoke(sub, [])
    assert res.exit_code == 1
    assert "error: needs pip install 'cxredge[train]' and [bold]this[/bold] kept as typed" in res.output


# --- 4. predict --help says what --json prints -----------------------------------------------------

def test_predict_help_describes_the_json_it_prints(run_dir, tiny_data):
    help_text = one_line(runner.invoke(app, ["predict", "--help"]).output.replace("│", " "))
    assert "one object per image" not in help_text
    listed = re.search(r"Print one JSON object instead of a table: \{([^}]*)\}", help_text)
    assert listed, help_text
    assert "predictions holding one entry per image" in help_text
    images = sorted((tiny_data / "test" / "alpha").glob("*.png"))[:2]
    res = runner.invoke(app, ["predict", str(run_dir / "fc" / "int8.tflite"), *map(str, images), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout[res.stdout.index("{"):res.stdout.rindex("}") + 1])
    assert list(doc) == [k.strip() for k in listed.group(1).split(",")]  # one object, the keys the help names
    assert len(doc["predictions"]) == 2 and {"label", "probabilities"} <= set(doc["predictions"][0])
