"""cxredge bench --remote over a real OpenSSH server on 127.0.0.1 (throw-away keys), and its error lines.

The loopback tests need sshd (openssh-server; .ci/run installs it) and are skipped, with the reason
shown by pytest -ra, only where it cannot be had. The remote side reuses this venv's Python
(--remote-python sys.executable, PYTHONPATH = this checkout), except the venv test, which creates a
venv there and pip-installs the device wheel of this checkout (tests/test_device_wheel.py: without
--remote-install, into a venv that never saw cxredge).
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cxredge.cli.main import app
from cxredge.errors import CxrError
from cxredge.remote.session import BenchJob, DeviceRun, RemoteSettings, remote_failure
from cxredge.remote.ssh import SshSettings, Target, parse_target, ssh_error
from cxredge.remote.wheel import device_wheel
import loopback_sshd
from edge_fixtures import make_run

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]
WHY = loopback_sshd.missing()


@pytest.fixture(scope="module")
def run_dir(edge_models, tiny_data, tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("remote_run"), edge_models, tiny_data)


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    if WHY:
        pytest.skip(f"loopback SSH tests need sshd: {WHY}")
    lb = loopback_sshd.start(tmp_path_factory.mktemp("sshd"))
    yield lb
    lb.stop()


def remote(lb, target=None, config=None, python=True) -> list[str]:
    args = ["--remote", target or lb.target, "--ssh-config", str(config or lb.client_config)]
    if python:
        args += ["--remote-python", sys.executable, "--remote-env", f"PYTHONPATH={REPO}"]
    return args


def bench(run_dir, out, *extra, one_model=False):
    what = [str(run_dir / "fc" / "int8.tflite")] if one_model else ["--run", str(run_dir)]
    return runner.invoke(app, ["bench", *what, "--runs", "5", "--warmup", "1", "--out", str(out), *extra])


def error_lines(output: str) -> list[str]:
    return [ln for ln in output.splitlines() if "error:" in ln]


# --- end to end -----------------------------------------------------------------------------------

def test_loopback_bench_matches_local_and_reports(sshd, run_dir, tmp_path):
    local = bench(run_dir, tmp_path / "local")
    assert local.exit_code == 0, local.output
    res = bench(run_dir, tmp_path, *remote(sshd), "--remote-prefix", "env CXREDGE_DEVICE_NOTE='loopback sshd'",
                "--name", "ward B", "--ci", "150")
    assert res.exit_code == 0, res.output
    dev = tmp_path / "devices" / f"127.0.0.1-{sshd.port}"
    doc = json.loads((dev / "bench.json").read_text())
    # --name and --ci reach the device (issue 22 cause 16: they were dropped)
    assert doc["dataset"]["name"] == "ward B" and doc["clinical"]["resamples"] == 150
    mine = json.loads((tmp_path / "local" / "bench.json").read_text())
    assert doc["remote"]["target"] == sshd.target and doc["remote"]["python"] == sys.executable
    assert doc["device"]["note"] == "loopback sshd"  # --remote-prefix ran before python there
    assert doc["remote"]["bundle_sha256"] and doc["dataset"]["chosen_from"]["n"] == 16
    assert [r["status"] for r in doc["results"]] == ["ok"] * 4
    # the same 16 labelled images, the same predictions, the same accuracy as the local bench
    assert doc["dataset"]["images_sha256"] == mine["dataset"]["images_sha256"]
    for key, m in mine["models"].items():
        assert doc["models"][key]["predictions_sha256"] == m["predictions_sha256"], key
        assert doc["models"][key]["accuracy"] == m["accuracy"]
    assert (dev / "bench.md").is_file() and (dev / "remote.log").is_file()
    work = re.search(r"(/\S*/cxredge-remote\.\w+)/out", (dev / "remote.log").read_text()).group(1)
    assert not Path(work).exists()  # the work folder there was removed
    # devices/*/bench.json of the --run folder join the report without being named
    rep = runner.invoke(app, ["report", "--run", str(tmp_path), "--bench", str(tmp_path / "local" / "bench.json"),
                              "--out", str(tmp_path / "rep")])
    assert rep.exit_code == 0, rep.output
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "[2] identical predictions on all 16 images" in md and "MISMATCH" not in md


def test_each_dataset_of_a_device_keeps_its_own_bench(sshd, run_dir, tiny_data, tmp_path):
    # the run's own split stays in devices/<label>/; another --data folder goes beside it, not over it
    own = bench(run_dir, tmp_path, *remote(sshd), "--ci", "0", one_model=True)
    assert own.exit_code == 0, own.output
    ext = bench(run_dir, tmp_path, *remote(sshd), "--ci", "0", "--data", str(tiny_data / "val"), "--name", "ward C",
                one_model=True)
    assert ext.exit_code == 0, ext.output
    label = f"127.0.0.1-{sshd.port}"
    first = json.loads((tmp_path / "devices" / label / "bench.json").read_text())
    second = json.loads((tmp_path / "devices" / f"{label}--ward-C" / "bench.json").read_text())
    assert Path(first["dataset"]["chosen_from"]["path"]).resolve() != Path(tiny_data / "val").resolve()
    assert second["dataset"]["name"] == "ward C" and first["dataset"]["name"] != "ward C"
    assert first["dataset"]["images_sha256"] != second["dataset"]["images_sha256"]
    assert sorted(p.name for p in (tmp_path / "devices").iterdir()) == [label, f"{label}--ward-C"]


def test_one_failing_device_keeps_the_others(sshd, run_dir, tmp_path):
    closed = loopback_sshd.free_port()
    res = bench(run_dir, tmp_path, *remote(sshd, target=f"down=root@127.0.0.1:{closed}"), *remote(sshd)[:2],
                one_model=True)
    assert res.exit_code == 1
    assert "1 of 2 devices failed" in res.output and "host unreachable" in res.output
    doc = json.loads((tmp_path / "devices" / f"127.0.0.1-{sshd.port}" / "bench.json").read_text())
    assert [r["model"] for r in doc["results"]] == ["fc/int8"] and doc["results"][0]["status"] == "ok"
    assert not (tmp_path / "devices" / "down").exists()


@pytest.mark.parametrize("case", ["unreachable", "auth", "hostkey", "python"])
def test_error_is_one_line(sshd, run_dir, tmp_path, case):
    unknown = sshd.folder / "ssh_config_unknown_host"
    unknown.write_text(sshd.client_config.read_text().replace(str(sshd.folder / "known_hosts"), "/dev/null"))
    args = {"unreachable": remote(sshd, target=f"root@127.0.0.1:{loopback_sshd.free_port()}"),
            "auth": remote(sshd, config=sshd.folder / "ssh_config_stranger"),
            "hostkey": remote(sshd, config=unknown),
            "python": remote(sshd, python=False) + ["--remote-python", "/nonexistent/python3"]}[case]
    res = bench(run_dir, tmp_path, *args, one_model=True)
    expected = {"unreachable": "host unreachable", "auth": "SSH authentication refused",
                "hostkey": "host key not known or changed", "python": "no Python at /nonexistent/python3 there"}
    lines = error_lines(res.output)
    assert res.exit_code == 1 and len(lines) == 1 and expected[case] in lines[0], res.output
    assert "Traceback" not in res.output and not (tmp_path / "devices").exists()


def test_disk_full_there_is_caught_before_copying(sshd, run_dir, tmp_path):
    full = tmp_path / "full"
    full.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(full)], capture_output=True).returncode:
        pytest.skip("cannot mount a 1 MB tmpfs here (needs root); the df check is unit-tested below")
    try:
        res = bench(run_dir, tmp_path, *remote(sshd), "--ssh-option", f"SetEnv=TMPDIR={full}", one_model=True)
    finally:
        subprocess.run(["umount", str(full)], check=False)
    lines = error_lines(res.output)
    assert res.exit_code == 1 and len(lines) == 1 and "disk full there: 1 MB free in" in lines[0], res.output


def test_venv_created_there_and_pip_failure_named(sshd, run_dir, tmp_path):
    """--remote-venv: created with `python -m venv`, pip install fails with one line, then installs a wheel."""
    venv = tmp_path / "remote venv"  # a space: paths are quoted for the remote shell
    site = sysconfig.get_paths()["purelib"]  # this venv's numpy, Pillow, LiteRT, typer, rich for the new venv
    base = remote(sshd, python=False) + ["--remote-python", sys.executable, "--remote-venv", str(venv),
                                         "--remote-env", f"PYTHONPATH={site}"]
    res = bench(run_dir, tmp_path, *base, "--remote-install", "--no-index no-such-package-cxr", one_model=True)
    lines = error_lines(res.output)
    assert res.exit_code == 1 and len(lines) == 1 and "pip install --no-index no-such-package-cxr failed" in lines[0]
    assert (venv / "bin" / "python").exists()  # the venv was made before pip failed
    wheel = device_wheel(tmp_path / "dist").path  # --remote-install ARGS replaces the default device wheel
    res = bench(run_dir, tmp_path, *base, "--remote-install", f"--no-index --no-deps {wheel}", one_model=True)
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "devices" / f"127.0.0.1-{sshd.port}" / "bench.json").read_text())
    assert doc["remote"]["venv"] == str(venv) and doc["remote"]["installed"][-1] == str(wheel)
    assert list(venv.glob("lib/python*/site-packages/cxredge/__init__.py"))  # the wheel's copy ran there
    assert [r["status"] for r in doc["results"]] == ["ok"]


# --- units: targets, options, error mapping -------------------------------------------------------

def test_targets_and_refused_options():
    assert parse_target("pi4=pi@10.0.0.5:2222") == Target("10.0.0.5", "pi", 2222, "pi4")
    assert parse_target("pi@raspberrypi.local").label == "raspberrypi.local"
    assert parse_target("root@[::1]:2200").host == "::1" and parse_target("u@h:22").label == "h-22"
    for bad in ("u@h:0", "u@h:ssh", "-oProxyCommand=x@h", "u@h;reboot", "u@"):
        with pytest.raises(CxrError, match="--remote"):
            parse_target(bad)
    for opt in (("StrictHostKeyChecking", "no"), ("BatchMode", "no"), ("ControlPath", "/tmp/x")):
        with pytest.raises(CxrError, match="--ssh-option"):
            SshSettings((opt,))
    assert SshSettings((("StrictHostKeyChecking", "accept-new"),)).strict == "accept-new"
    res = runner.invoke(app, ["bench", "--remote", "a@h", "--remote", "b@h"])
    assert res.exit_code == 1 and "two devices would write devices/h/" in res.output


@pytest.mark.parametrize("ci", ["-5", "5", "1000001"])
def test_ci_out_of_range_is_refused_before_any_device(ci):
    for where in ([], ["--remote", "u@unreachable.invalid"]):
        res = runner.invoke(app, ["bench", "--ci", ci, *where])
        assert res.exit_code == 1 and f"--ci {ci}: bootstrap resamples must be 0" in res.output, res.output


def test_error_mapping_from_ssh_and_remote_stderr():
    t = Target("pi.local", "pi")
    assert "host unreachable" in str(
        ssh_error(t, "ssh: Could not resolve hostname pi.local: Name or service not known"))
    assert "authentication refused" in str(
        ssh_error(t, "Warning: Permanently added x\npi@pi.local: Permission denied (publickey)."))
    assert "host key not known" in str(ssh_error(t, "Host key verification failed."))
    err = remote_failure(t, "pip install cxredge", 1, "ERROR: Could not install packages due to an OSError: "
                         "[Errno 28] No space left on device")
    assert str(err) == "pi@pi.local: disk full there (pip install cxredge: No space left on device)"


class FakeConnection:
    def __init__(self, facts: str):
        self.facts = facts

    def run(self, script, what, stdin=None, timeout=None, stdout=None):
        return 0, self.facts.encode(), ""


def test_df_check_and_missing_python_from_facts(tmp_path):
    bundle = tmp_path / "bundle.zip"
    bundle.write_bytes(os.urandom(1 << 20))
    job = BenchJob(bundle, "test", (), {})
    rs = RemoteSettings((Target("h", "u"),))

    class View:
        def phase(self, *a):
            pass

        def advance(self, *a):
            pass

    def facts(text):
        run = DeviceRun(Target("h", "u"), rs, job, View())
        run.conn = FakeConnection(text)
        run.facts()

    with pytest.raises(CxrError, match=r"u@h: disk full there: 2 MB free in /tmp/cxredge-remote.x"):
        facts("work=/tmp/cxredge-remote.x\ntmp_free_kb=2048\npython=/usr/bin/python3\npython_version=3.11.2\n")
    with pytest.raises(CxrError, match=r"u@h: no python3 there"):
        facts("work=/tmp/cxredge-remote.x\ntmp_free_kb=999999\n")
    with pytest.raises(CxrError, match=r"Python 3.9.2 there; cxredge needs 3.10"):
        facts("work=/tmp/cxredge-remote.x\ntmp_free_kb=999999\npython=/usr/bin/python3\npython_version=3.9.2\n")
