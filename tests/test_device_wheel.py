"""The device wheel (cxredge/remote/wheel.py) and `bench --remote` installing it on a device that never saw cxredge.

The end-to-end test benches through a throw-away sshd on 127.0.0.1 (tests/loopback_sshd.py) into a venv that
cxredge creates there from scratch, with no --remote-install: cxredge must come from the wheel built here.
So that it needs no network, the heavy dependencies (numpy, Pillow, LiteRT, typer, rich and what they need,
never cxredge) are offered to the device's Python as a folder on PYTHONPATH, and pip runs with PIP_NO_INDEX.
"""
from __future__ import annotations

import hashlib
import json
import sys
import zipfile
from base64 import urlsafe_b64encode
from importlib import metadata
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cxredge import __version__
from cxredge.cli.main import app
from cxredge.remote.wheel import device_wheel
import loopback_sshd
from edge_fixtures import make_run

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]


def test_wheel_is_lean_complete_and_reproducible(tmp_path, monkeypatch):
    monkeypatch.setenv("CXREDGE_CACHE", str(tmp_path / "cache"))
    w = device_wheel()
    assert w.path.name == f"cxredge-{__version__}-py3-none-any.whl" and w.version == __version__
    assert w.path.is_relative_to(tmp_path / "cache" / "wheels")
    with zipfile.ZipFile(w.path) as zf:
        names = set(zf.namelist())
        info = f"cxredge-{__version__}.dist-info"
        meta = zf.read(f"{info}/METADATA").decode()
        record = zf.read(f"{info}/RECORD").decode().splitlines()
        # every RECORD hash matches its member (pip and installers trust it)
        for line in record:
            name, digest, size = line.rsplit(",", 2)
            if digest:
                data = zf.read(name)
                assert digest == "sha256=" + urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
                assert int(size) == len(data)
        assert {ln.rsplit(",", 2)[0] for ln in record} == names
    shipped = {f"cxredge/{p.relative_to(REPO / 'cxredge').as_posix()}" for p in (REPO / "cxredge").rglob("*.py")
               if "__pycache__" not in p.parts}
    assert shipped <= names  # every module that runs here
    assert not [n for n in names if n.endswith((".h5", ".png")) or "/data/sample/" in n or "/weights/" in n]
    assert f"Version: {__version__}" in meta and "Requires-Dist: numpy" in meta and "tensorflow" not in meta
    assert "cxredge = cxredge.cli.main:main" in zipfile.ZipFile(w.path).read(f"{info}/entry_points.txt").decode()
    # the same source gives the same bytes; the cache answers the second call, another folder gets a copy
    again = device_wheel()
    assert again.path == w.path and again.sha256 == w.sha256
    other = device_wheel(tmp_path / "dist")
    assert other.sha256 == w.sha256 and other.path.parent == tmp_path / "dist"
    full = sum(p.stat().st_size for p in (REPO / "cxredge").rglob("*") if p.is_file())
    assert w.path.stat().st_size < full / 10  # the training weights alone are ~10.6 MB


def test_changed_source_changes_the_key(tmp_path, monkeypatch):
    import shutil

    monkeypatch.setenv("CXREDGE_CACHE", str(tmp_path / "cache"))
    pkg = tmp_path / "src" / "cxredge"
    shutil.copytree(REPO / "cxredge", pkg, ignore=shutil.ignore_patterns("__pycache__", "*.h5", "sample"))
    shutil.copy(REPO / "pyproject.toml", pkg.parent / "pyproject.toml")
    a = device_wheel(package=pkg)
    (pkg / "edge" / "extra_module.py").write_text("X = 1\n")
    b = device_wheel(package=pkg)
    assert a.source_sha256 != b.source_sha256 and a.path.parent != b.path.parent and a.sha256 != b.sha256
    assert "cxredge/edge/extra_module.py" in zipfile.ZipFile(b.path).namelist()
    # run from an install (no pyproject.toml next to the package): the requirements come from its metadata
    (pkg.parent / "pyproject.toml").unlink()
    meta = zipfile.ZipFile(device_wheel(package=pkg).path).read(f"cxredge-{__version__}.dist-info/METADATA").decode()
    assert "Requires-Dist: numpy" in meta and "ai-edge-litert" in meta and "extra" not in meta


def dependency_site(dest: Path) -> Path:
    """Symlinks to cxredge's installed dependencies (their whole closure), never cxredge itself."""
    from packaging.requirements import Requirement

    dest.mkdir()
    todo, seen = [Requirement(r) for r in metadata.requires("cxredge") or []], {"cxredge"}
    while todo:
        req = todo.pop()
        name = req.name.lower().replace("_", "-")
        if name in seen or (req.marker is not None and not req.marker.evaluate({"extra": ""})):
            continue
        seen.add(name)
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            continue
        root = Path(dist.locate_file(""))
        for top in {Path(f).parts[0] for f in dist.files or [] if not str(f).startswith((".", "/"))}:
            if (root / top).exists() and not (dest / top).exists() and top != "bin":
                (dest / top).symlink_to(root / top)
        todo += [Requirement(r) for r in dist.requires or []]
    assert not (dest / "cxredge").exists() and not list(dest.glob("cxredge*"))
    return dest


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    why = loopback_sshd.missing()
    if why:
        pytest.skip(f"loopback SSH tests need sshd: {why}")
    lb = loopback_sshd.start(tmp_path_factory.mktemp("sshd"))
    yield lb
    lb.stop()


def test_bench_remote_installs_this_cxredge_on_a_fresh_device(sshd, edge_models, tiny_data, tmp_path, monkeypatch):
    """No --remote-install: a fresh venv there gets the device wheel of the cxredge running here, then benches."""
    monkeypatch.setenv("CXREDGE_CACHE", str(tmp_path / "cache"))
    run = make_run(tmp_path / "run", edge_models, tiny_data)
    venv = tmp_path / "device venv"  # made by cxredge there; a space: paths are quoted for the remote shell
    deps = dependency_site(tmp_path / "deps")
    args = ["bench", str(run / "fc" / "int8.tflite"), "--runs", "3", "--warmup", "1", "--ci", "0",
            "--remote", sshd.target, "--ssh-config", str(sshd.client_config),
            "--remote-python", sys.executable, "--remote-venv", str(venv),
            "--remote-env", f"PYTHONPATH={deps}", "--remote-env", "PIP_NO_INDEX=1", "--out", str(tmp_path / "out")]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    wheel = device_wheel()
    doc = json.loads((tmp_path / "out" / "devices" / f"127.0.0.1-{sshd.port}" / "bench.json").read_text())
    rec = doc["remote"]["wheel"]
    assert rec["sha256"] == wheel.sha256 and rec["version"] == __version__ and rec["installed_now"] is True
    assert doc["remote"]["cxredge"] == f"cxredge {__version__}" and doc["remote"]["venv"] == str(venv)
    assert [r["status"] for r in doc["results"]] == ["ok"]
    site = next(venv.glob("lib/python*/site-packages"))
    assert (site / "cxredge" / "__init__.py").is_file() and not (site / "cxredge" / "weights").exists()
    assert (site / f"cxredge-{__version__}.dist-info").is_dir() and (venv / "bin" / "cxredge").is_file()
    assert (venv / "cxredge-wheel.sha256").read_text().strip() == wheel.sha256
    # the second bench finds that very wheel in the venv and installs nothing
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "out" / "devices" / f"127.0.0.1-{sshd.port}" / "bench.json").read_text())
    assert doc["remote"]["wheel"]["installed_now"] is False and doc["remote"]["wheel"]["in_venv"] is True
    assert doc["remote"]["installed"] is None
    # --remote-install ARGS puts something else there: the venv forgets the wheel, the next plain run re-installs it
    res = runner.invoke(app, [*args, "--remote-install", f"--no-deps --force-reinstall {wheel.path}"])
    assert res.exit_code == 0, res.output
    assert not (venv / "cxredge-wheel.sha256").exists()
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "out" / "devices" / f"127.0.0.1-{sshd.port}" / "bench.json").read_text())
    assert doc["remote"]["wheel"]["installed_now"] is True
