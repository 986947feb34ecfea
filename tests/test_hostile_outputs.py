"""Issue 22 causes 7, 13 and 18: where results are written. OS errors are one line naming the path (not a
traceback), artifacts get the mode open() would give them (not mkstemp's 0600), and what a SIGKILL leaves
behind is cleaned by the next run. Each test failed on the main before the fix."""
from __future__ import annotations

import errno
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cxredge.cli.main import app
from cxredge.errors import CxrError
from cxredge.io import atomic_path, remove_stale, scratch_dir, write_files, write_json, write_text

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]
HOUR = 3600


def one_error_line(res) -> str:
    """The run failed with exit 1 and said so in one `error:` line, with no traceback."""
    assert res.exit_code == 1, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert "Traceback" not in res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert lines and lines[-1].startswith("error: "), res.output
    return lines[-1]


def age(path: Path, seconds: float) -> None:
    t = time.time() - seconds
    os.utime(path, (t, t), follow_symlinks=False)


@pytest.fixture()
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


# --- cause 7: OS errors are one line naming the path ---------------------------------------------

@pytest.mark.parametrize("make_out", [
    lambda tmp: Path("/proc/cxredge-x"),  # a folder that cannot be made (/proc)
    lambda tmp: (tmp / "file").write_text("x") and tmp / "file" / "sub",  # a parent that is a file
    lambda tmp: (tmp / "file2").write_text("x") and tmp / "file2",  # --out is a file
], ids=["proc", "parent-is-file", "out-is-file"])
def test_audit_out_that_cannot_be_written_is_one_line(tiny_data, tmp_path, make_out):
    out = make_out(tmp_path)
    res = runner.invoke(app, ["audit", str(tiny_data), "--out", str(out)])
    line = one_error_line(res)
    assert line.startswith(f"error: --out {out}"), line


def test_export_out_named_zip_that_is_a_folder(tmp_path):
    (tmp_path / "x.zip").mkdir()
    res = runner.invoke(app, ["export", "--out", str(tmp_path / "x.zip"), "--run", str(tmp_path)])
    assert one_error_line(res) == f"error: --out {tmp_path / 'x.zip'}: is a folder, not a file"


def test_report_out_under_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    res = runner.invoke(app, ["report", "--run", str(tmp_path), "--out", str(tmp_path / "f" / "r")])
    assert "f is a file, not a folder" in one_error_line(res)


def test_full_disk_names_the_artifact_and_keeps_the_old_one(tmp_path):
    target = tmp_path / "bench.json"
    write_json(target, {"good": 1})
    with pytest.raises(CxrError, match=r"bench.json: cannot write \(No space left on device\)"):
        with atomic_path(target):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # what write() says on a full disk
    assert target.read_text() == '{\n  "good": 1\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["bench.json"]  # no temporary left


def test_handle_errors_turns_any_oserror_into_one_line(monkeypatch, tmp_path):
    """An OSError nothing checked up front (a read-only file system at write time) is still one line."""
    def read_only(*a, **k):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(tmp_path / "out" / "audit.json"))

    monkeypatch.setattr("cxredge.edge.data.dataset.scan", read_only)
    res = runner.invoke(app, ["audit", str(tmp_path), "--out", str(tmp_path / "out")])
    assert one_error_line(res) == f"error: {tmp_path / 'out' / 'audit.json'}: Read-only file system"


def test_programming_errors_keep_their_traceback(monkeypatch, tmp_path):
    """Policy (docs/security.md): only CxrError and OSError become one line; a bug is never swallowed."""
    def bug(*a, **k):
        raise KeyError("a bug")

    monkeypatch.setattr("cxredge.edge.data.dataset.scan", bug)
    res = runner.invoke(app, ["audit", str(tmp_path), "--out", str(tmp_path / "out")])
    assert isinstance(res.exception, KeyError)


# --- cause 13: file modes -----------------------------------------------------------------------

def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_atomic_writes_get_the_mode_open_would_give(tmp_path, umask_022):
    assert mode(write_text(tmp_path / "report.html", "x")) == 0o644
    os.umask(0o002)  # a group that shares a run folder
    assert mode(write_json(tmp_path / "bench.json", {})) == 0o664
    assert mode(write_files({tmp_path / "a.md": "a", tmp_path / "b.md": b"b"})[1]) == 0o664


def test_atomic_rewrite_keeps_the_files_own_mode(tmp_path, umask_022):
    p = tmp_path / "bench.json"
    p.write_text("{}")
    p.chmod(0o640)
    write_json(p, {"new": 1})
    assert mode(p) == 0o640 and "new" in p.read_text()


def test_bundle_is_group_readable(tmp_path, umask_022):
    from cxredge.edge.formats.bundle import write_bundle

    src = tmp_path / "int8.tflite"
    src.write_bytes(b"TFL3")
    out = write_bundle(tmp_path / "b.zip", {"fc/int8.tflite": src}, {"classes": ["a"], "run": None})
    assert out["models"][0]["path"] == "fc/int8.tflite"
    assert mode(tmp_path / "b.zip") == 0o644
    assert zipfile.is_zipfile(tmp_path / "b.zip")


def test_save_model_temp_has_keras_suffix_and_mode(tmp_path, umask_022):
    """train/artifacts.save_model goes through atomic_path(suffix='.keras'): a model saved by any writer gets
    the open() mode (checked without TensorFlow: the writer here is a stand-in for model.save)."""
    seen = []
    with atomic_path(tmp_path / "model.keras", suffix=".keras") as tmp:
        seen.append(tmp.name)
        os.unlink(tmp)  # model.save replaces the file mkstemp made
        tmp.write_bytes(b"PK")
    assert seen[0].startswith(".model.keras.") and seen[0].endswith(".keras")
    assert mode(tmp_path / "model.keras") == 0o644


# --- cause 18: what a SIGKILL leaves is cleaned by the next run ----------------------------------

KILLED_WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from cxredge.io import atomic_path, scratch_dir
    out = Path(sys.argv[1])
    with scratch_dir(out) as scratch, atomic_path(out / "bench.json") as tmp:
        tmp.write_text("half")
        (scratch / "model.tflite").write_bytes(b"x")
        print(tmp.name, scratch.name, flush=True)
        time.sleep(60)
""")


def test_sigkill_leftovers_are_cleaned_by_the_next_run(tmp_path):
    out = tmp_path / "run"
    write_json(out / "bench.json", {"good": 1})
    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(out)], stdout=subprocess.PIPE, text=True,
                            env=env)
    try:
        tmp_name, scratch_name = proc.stdout.readline().split()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    left = {p.name for p in out.iterdir()}
    assert {tmp_name, scratch_name, "bench.json"} == left  # the kill left both behind, the result intact
    assert (out / "bench.json").read_text() == '{\n  "good": 1\n}\n'
    assert scratch_name.startswith(".cxredge-bundle-")  # under the output folder, not /tmp

    write_json(out / "bench.json", {"next": 1})  # an hour has not passed: a live run's temporaries are kept
    with scratch_dir(out):
        pass
    assert {tmp_name, scratch_name} <= {p.name for p in out.iterdir()}

    age(out / tmp_name, 2 * HOUR)
    age(out / scratch_name, 2 * HOUR)
    write_json(out / "bench.json", {"next": 2})
    with scratch_dir(out) as s:
        assert s.parent == out
    assert {p.name for p in out.iterdir()} == {"bench.json"}


def test_stale_cleanup_touches_only_our_own_names(tmp_path):
    mine = tmp_path / ".bench.json.k2j4_x9a.tmp"
    users = [tmp_path / n for n in (".bench.json.notes.tmp", "bench.json.k2j4_x9a.tmp", ".bench.json.k2j4_x9a.tmp.bak",
                                    ".other.json.k2j4_x9a.tmp", ".cxredge-bundle-x-k2j4_x9a.tmp")]
    for p in [mine] + users:
        p.write_text("x")
        age(p, 2 * HOUR)
    link = tmp_path / ".bench.json.zzzzzzzz.tmp"
    link.symlink_to(users[0])
    age(link, 2 * HOUR)
    write_text(tmp_path / "bench.json", "{}")
    assert not mine.exists()
    assert all(p.exists() for p in users)
    assert link.is_symlink() and users[0].exists()  # we never make links: one with our name is not ours


def test_live_scratch_folder_is_kept_however_old(tmp_path):
    live = tmp_path / f".cxredge-bundle-{os.getpid()}-abcd1234.tmp"
    live.mkdir()
    age(live, 5 * HOUR)
    remove_stale(tmp_path, r"\.cxredge-bundle-\d+-[a-z0-9_]{8}\.tmp")
    assert live.is_dir()


def test_write_files_is_all_or_nothing(tmp_path):
    """audit.json, audit.md and audit.html are replaced together or not at all."""
    a, b = tmp_path / "audit.json", tmp_path / "audit.md"
    write_text(a, "old json")
    write_text(b, "old md")
    with pytest.raises(UnicodeEncodeError):
        write_files({a: "new json", b: "bad \udcff name"})
    assert a.read_text() == "old json" and b.read_text() == "old md"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audit.json", "audit.md"]
    write_files({a: "new json", b: "new md"})
    assert a.read_text() == "new json" and b.read_text() == "new md"


def test_bench_unpacks_a_bundle_under_its_output_folder(tmp_path, monkeypatch):
    """Not /tmp/cxredge-bundle-*: the unpacked bundle sits in --out (cleaned with it), and goes at the end."""
    seen = []

    def fake_open(path, dest):
        seen.append(dest)
        assert dest.is_dir()
        raise CxrError(f"{path}: stop here")

    monkeypatch.setattr("cxredge.edge.formats.bundle.open_bundle", fake_open)
    (tmp_path / "b.zip").write_bytes(b"")
    res = runner.invoke(app, ["bench", str(tmp_path / "b.zip"), "--out", str(tmp_path / "out")])
    assert "stop here" in one_error_line(res)
    assert seen[0].parent == tmp_path / "out" and seen[0].name.startswith(".cxredge-bundle-")
    assert not seen[0].exists()


def test_an_error_naming_a_hostile_file_is_still_one_printable_line(tmp_path):
    """A CxrError or OSError whose path holds a newline or bytes that are not UTF-8 prints as one line."""
    data = tmp_path / "data"
    bad = os.path.join(os.fsencode(data), b"x\nerror: fake\xff")
    os.makedirs(bad)
    res = runner.invoke(app, ["audit", os.fsdecode(bad), "--out", str(tmp_path / "out")])
    line = one_error_line(res)
    assert "x\\x0aerror: fake\\xff" in line and len(res.output.strip().splitlines()) == 1
