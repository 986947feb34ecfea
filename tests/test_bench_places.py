"""No bench overwrites another (issue 24 item 2, issue 22 cause 2) and latency you can trust (issue 24
item 4): one folder per dataset, written as one unit; a failed bench keeps the good one; noisy rows are
flagged, re-measured once, and give no speed-up; the report finds every bench of the run by itself."""
from __future__ import annotations

import json
import shutil
import sys

import pytest
from typer.testing import CliRunner

from cxredge.cli.main import app
from edge_fixtures import make_run

runner = CliRunner()
FAST = ["--runs", "3", "--warmup", "1", "--ci", "100"]


def bench(*args):
    return runner.invoke(app, ["bench", *map(str, args), *FAST])


def snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def run_dir(edge_models, tiny_data, tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("places_run"), edge_models, tiny_data)


@pytest.fixture(scope="module")
def external(tiny_data, tmp_path_factory):
    ext = tmp_path_factory.mktemp("ext") / "hospital_b"
    shutil.copytree(tiny_data / "test", ext / "test")
    for folder in (ext / "test").iterdir():  # other images than the internal test split
        sorted(folder.iterdir())[0].unlink()
    return ext


def test_internal_and_external_benches_each_get_their_own_place(run_dir, external):
    res = bench("--run", run_dir)
    assert res.exit_code == 0, res.output
    internal = run_dir / "bench" / "test"
    before = snapshot(internal)
    assert "bench.json" in before and "bench.md" in before and "bench_latency.png" in before
    res = bench("--run", run_dir, "--data", external)
    assert res.exit_code == 0, res.output
    ext = json.loads((run_dir / "bench" / "hospital_b" / "bench.json").read_text())
    assert ext["dataset"]["internal"] is False and ext["dataset"]["name"] == "hospital_b"
    assert snapshot(internal) == before  # the internal bench is untouched
    assert not (run_dir / "bench.json").exists()
    # the report finds both by itself and puts them side by side
    res = runner.invoke(app, ["report", "--run", str(run_dir), "--out", str(run_dir / "rep")])
    assert res.exit_code == 0, res.output
    md = (run_dir / "rep" / "report.md").read_text()
    assert "Internal vs external test sets" in md and "hospital_b" in md


def test_a_bench_of_another_folder_with_the_same_name_gets_a_new_place(run_dir, external, tmp_path):
    other = tmp_path / "elsewhere" / "hospital_b"
    shutil.copytree(external, other)
    res = bench("--run", run_dir, "--data", other)
    assert res.exit_code == 0, res.output
    doc = json.loads((run_dir / "bench" / "hospital_b-2" / "bench.json").read_text())
    assert doc["dataset"]["path"] == str(other.resolve()) or doc["dataset"]["path"] == str(other)
    shutil.rmtree(run_dir / "bench" / "hospital_b-2")


def test_a_failed_bench_never_replaces_a_good_one(run_dir):
    internal = run_dir / "bench" / "test"
    if not internal.is_dir():
        assert bench("--run", run_dir).exit_code == 0
    before = snapshot(internal)
    res = bench("--run", run_dir, "--delegate", "/no/such/libdelegate.so")
    assert res.exit_code == 1 and "all 4 rows failed" in res.output, res.output
    after = snapshot(internal)
    failed = json.loads(after.pop("bench.failed.json"))
    assert after == before  # bench.json, bench.md and every plot: the good bench, byte for byte
    assert {r["status"] for r in failed["results"]} == {"failed"}


def test_an_interrupted_write_leaves_the_previous_unit(run_dir, monkeypatch):
    """cause 2: the plots are drawn before bench.json is written; a failure in between changes nothing."""
    from cxredge.edge.bench import results

    internal = run_dir / "bench" / "test"
    if not (internal / "bench.json").is_file():
        assert bench("--run", run_dir).exit_code == 0
    before = {k: v for k, v in snapshot(internal).items() if k != "bench.failed.json"}

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(results, "write_bench", boom)
    res = bench("--run", run_dir)
    assert res.exit_code != 0
    assert {k: v for k, v in snapshot(internal).items() if k != "bench.failed.json"} == before
    assert not [p for p in (run_dir / "bench").iterdir() if p.name.startswith(".")]  # no staging left


def test_out_folder_never_keeps_old_plots_beside_a_new_bench(run_dir, tmp_path, monkeypatch):
    """cause 2 with --out DIR: a bench without plots removes the previous bench's plots."""
    out = tmp_path / "out"
    assert bench("--run", run_dir, "--out", out).exit_code == 0
    assert (out / "bench_latency.png").is_file()
    (out / "mine.txt").write_text("a user's file")
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    res = bench("--run", run_dir, "--out", out)
    assert res.exit_code == 0, res.output
    assert json.loads((out / "bench.json").read_text())["plots"] == []
    assert not list(out.glob("*.png")) and (out / "mine.txt").read_text() == "a user's file"


def test_bench_place_names_are_safe_and_deduplicated(tmp_path):
    from cxredge.edge.bench import store as bench_store

    assert bench_store.safe_name("../../etc") == "etc" and bench_store.safe_name("..") == "dataset"
    assert bench_store.safe_name("Hospital B (2024)/test") == "Hospital-B-2024-test"
    a, b = tmp_path / "a", tmp_path / "b"
    place = bench_store.bench_place(tmp_path, "x", a, "test")
    place.mkdir(parents=True)
    (place / "bench.json").write_text(json.dumps({"dataset": {"path": str(a), "split": "test"}}))
    assert bench_store.bench_place(tmp_path, "x", a, "test") == place  # the same images: benched again there
    assert bench_store.bench_place(tmp_path, "x", b, "test").name == "x-2"  # other images: a new place
    assert bench_store.bench_place(tmp_path, "x", a, "val").name == "x-2"


def test_report_merges_the_same_bench_given_twice_with_a_note(run_dir, tmp_path):
    b = run_dir / "bench" / "test" / "bench.json"
    if not b.is_file():
        assert bench("--run", run_dir).exit_code == 0
    copy = tmp_path / "copy.json"
    shutil.copy(b, copy)
    res = runner.invoke(app, ["report", "--bench", str(b), "--bench", str(b), "--bench", str(copy),
                              "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    md = (tmp_path / "report.md").read_text()
    assert md.count("## On-device benchmark") == 1 and md.count("Clinical metrics on") == 1
    assert "given twice" in md and "Side by side" not in md


# --- latency you can trust (issue 24 item 4) ---------------------------------------------------

def noisy_timer(calls):
    def fake(model, runs, warmup):
        calls.append(runs)
        base = 1_000_000
        return [base] * (runs - max(1, runs // 5)) + [base * 4] * max(1, runs // 5)  # p90 = 4 x median
    return fake


def test_steady_latency_remeasures_and_keeps_the_better_run():
    from cxredge.edge.bench.measure import steady_latency

    runs = iter([[10] * 7 + [50] * 3, [10] * 10])
    stats, check = steady_latency(lambda: next(runs))
    assert check["remeasured"] and not check["noisy"] and check["first_spread"] > 1.5 and stats["p90"] == 1e-5
    runs = iter([[10] * 7 + [50] * 3, [10] * 7 + [40] * 3])
    stats, check = steady_latency(lambda: next(runs))
    assert check["remeasured"] and check["noisy"] and stats["p90"] == pytest.approx(4e-5)
    stats, check = steady_latency(lambda: [10] * 10)
    assert not check["remeasured"] and not check["noisy"] and check["spread"] == 1.0


def test_noisy_rows_are_flagged_and_give_no_speedup(run_dir, tmp_path, monkeypatch):
    from cxredge.edge.bench import measure as edge_bench

    calls = []
    monkeypatch.setattr(edge_bench, "time_invokes", noisy_timer(calls))
    res = runner.invoke(app, ["bench", "--run", str(run_dir), "--runs", "10", "--warmup", "0", "--ci", "0",
                              "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert calls == [10] * 8  # 4 rows, each re-measured once
    doc = json.loads((tmp_path / "bench.json").read_text())
    for r in doc["results"]:
        assert r["latency_noisy"] is True and r["latency_check"]["remeasured"] is True
        assert r["speedup_vs_float32"] is None
    load = doc["machine_load"]
    assert isinstance(load["before"]["loadavg"], list) and len(load["before"]["loadavg"]) == 3
    assert "cpu_governor" in load["before"] and "loadavg" in load["after"]
    assert "noisy" in (tmp_path / "bench.md").read_text()
    res = runner.invoke(app, ["report", "--bench", str(tmp_path / "bench.json"), "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    md = (tmp_path / "report.md").read_text()
    assert "ok, NOISY latency" in md and "noisy latency on" in md
    assert not [ln for ln in md.splitlines() if ln.startswith("| fc/int8 |") and "x |" in ln]  # no speed-up cell
