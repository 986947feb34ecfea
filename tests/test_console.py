"""What a user sees in a terminal (issue 24 item 6): help shows flags as flags and defaults as words, tables
fit 80 columns without cutting a number, TensorFlow's start-up noise stays off stderr. Each failed on main."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cxredge.cli.main import app
from cxredge.paths import PACKAGE_DIR
from edge_fixtures import make_run

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]
COMMANDS = ["train", "ensemble", "quantize", "bench", "predict", "export", "report", "audit", "explain"]


def terminal(*args, columns: int = 80, **env) -> subprocess.CompletedProcess:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("TF_CPP_", "CXREDGE_VERBOSE"))},
           "COLUMNS": str(columns), "PYTHONPATH": os.pathsep.join([str(REPO), *sys.path]), **env}  # as a user has it
    return subprocess.run([sys.executable, *map(str, args)], env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("command", COMMANDS)
def test_help_shows_flags_as_flags_and_defaults_as_words(command):
    text = runner.invoke(app, [command, "--help"], env={"COLUMNS": "80"}).output
    assert "<bool>" not in text, text  # `--json`, not `--json <bool>`
    assert str(PACKAGE_DIR) not in text and "/cxredge/data/sample" not in text  # no machine path as a default
    assert not re.search(r"over \d+ seeds|val 0\.\d{3} vs", text)  # research numbers live in docs/
    assert "…" not in text, text  # at 80 columns help folds (long option names, paths), never cuts


def test_bundled_sample_default_is_named_in_words():
    for command in ("train", "audit"):
        text = " ".join(re.sub("[│╭╮╰╯─]", " ", runner.invoke(app, [command, "--help"]).output).split())
        assert "[default: (the bundled sample)]" in text, text


def test_tensorflow_start_up_noise_is_silenced_unless_verbose():
    code = "import cxredge.keras as k; x = k.tf.constant([1.0]) * 2; print('ok')"
    quiet = terminal("-c", code)
    assert quiet.returncode == 0 and quiet.stdout.strip() == "ok", quiet.stderr
    noise = re.compile(r"cuInit|cuda drivers|oneDNN custom operations|absl::InitializeLog|NodeDef mentions|"
                       r"^[IWE]\d{4} ", re.M)
    assert not noise.search(quiet.stderr), quiet.stderr
    # the filter keeps what is not noise: a line written to fd 2 while TensorFlow is imported survives
    probe = ("import os, cxredge.keras as k\nwith k.quiet_native_stderr():\n"
             "    os.write(2, b'a real problem\\nW0000 00:00 cudart_stub.cc:31] Could not find cuda drivers\\n')\n")
    res = terminal("-c", probe)
    assert res.returncode == 0 and "a real problem" in res.stderr and "cuda drivers" not in res.stderr, res.stderr
    loud = terminal("-c", probe, CXREDGE_VERBOSE="1")
    assert "Could not find cuda drivers" in loud.stderr  # --verbose: nothing filtered


def test_root_verbose_option_is_a_flag():
    text = runner.invoke(app, ["--help"], env={"COLUMNS": "80"}).output
    assert re.search(r"--verbose\s+Show TensorFlow's own log lines", text), text


def test_bench_tables_fit_80_columns_and_keep_every_interval(edge_models, tiny_data, tmp_path):
    run = make_run(tmp_path / "run", edge_models, tiny_data)
    res = terminal("-m", "cxredge", "bench", "--run", run, "--runs", "3", "--warmup", "1", "--ci", "200",
                   "--out", tmp_path / "b", columns=80)
    assert res.returncode == 0, res.stderr
    tables = [ln for ln in res.stdout.splitlines() if not ln.startswith(("no OOD", "wrote", "evaluating"))]
    assert max(map(len, tables)) <= 80 and "…" not in res.stdout, res.stdout
    doc = json.loads((tmp_path / "b" / "bench.json").read_text())
    intervals = [m["ci95"][k] for m in doc["models"].values() for k in ("accuracy", "macro_auc")]
    assert intervals and all(f"{lo:.3f}-{hi:.3f}" in res.stdout for lo, hi in intervals), res.stdout
