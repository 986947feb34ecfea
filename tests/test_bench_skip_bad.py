"""Issue 22 cause 15: bench's corrupt-image error suggested `--skip-bad`, which bench did not have. Now bench
has it (as audit and train): unreadable files are skipped, listed in bench.json dataset.skipped and left out
of n. Failed on the main before the fix (no such option)."""
from __future__ import annotations

import json

from typer.testing import CliRunner

from cxredge.cli.main import app
from edge_fixtures import make_run

runner = CliRunner()


def test_bench_skip_bad(edge_models, tiny_data_copy, tmp_path):
    bad = next((tiny_data_copy / "test" / "beta").glob("*.png"))
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    run = make_run(tmp_path / "run", edge_models, tiny_data_copy, variants=("fc",))
    args = ["bench", str(run / "fc" / "int8.tflite"), "--labels", str(tmp_path / "labels.txt"), "--data",
            str(tiny_data_copy), "--runs", "1", "--warmup", "0", "--ci", "0"]
    (tmp_path / "labels.txt").write_text("alpha\nbeta\ndelta\ngamma\n")

    res = runner.invoke(app, args + ["--out", str(tmp_path / "stop")])
    assert res.exit_code == 1 and "Traceback" not in res.output
    line = [ln for ln in res.output.splitlines() if ln.startswith("error:")][-1]
    assert bad.name in line and "--skip-bad" in line
    assert not (tmp_path / "stop" / "bench.json").exists()

    res = runner.invoke(app, args + ["--out", str(tmp_path / "ok"), "--skip-bad"])
    assert res.exit_code == 0, res.output
    assert "skipped 1 unreadable image(s)" in res.output
    ds = json.loads((tmp_path / "ok" / "bench.json").read_text())["dataset"]
    assert ds["skipped"] == [str(bad)] and ds["n"] == 15 and ds["counts"]["beta"] == 3
