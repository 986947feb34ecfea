"""One device over SSH: facts, a Python with cxredge, the bundle, `python -m cxredge bench`, bench.json back.

Steps (each failure is one CxrError line naming the device):
 1. facts   one call: a fresh work folder (mktemp -d under $TMPDIR or /tmp), uname -m, free space (df),
            the Python there and its version, the venv and the cxredge version it has
 2. python  --remote-python PATH alone: that interpreter, used as it is (it must have cxredge).
            Otherwise a venv (--remote-venv, default ~/.cache/cxredge/venv): created with
            `python3 -m venv` (or --remote-python) when missing; then the device wheel of the cxredge
            running here (cxredge/remote/wheel.py) is copied and pip-installed there, its dependencies
            from the device's index, unless the venv already holds that very wheel (same sha256, noted
            in VENV/cxredge-wheel.sha256). --remote-install ARGS replaces the wheel with ARGS.
 3. upload  the bundle (and any local file named in --remote-install) streamed through ssh
 4. bench   `[--remote-prefix] python -m cxredge bench WORK/bundle.zip --split ... --threads ... --out WORK/out`
 5. fetch   WORK/out as a tar stream; bench.json is checked, gains a `remote` block, and is written
            atomically under devices/<label>/ (bench.md, plots and the remote log next to it)
 6. clean   the work folder there is removed, whatever happened
"""
from __future__ import annotations

import io
import json
import shlex
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from cxredge.errors import CxrError
from cxredge.formats import BENCH_JSON
from cxredge.io import sha256_file, write_bytes, write_json
from cxredge.remote.ssh import Connection, SshSettings, Target, last_line
from cxredge.remote.wheel import DeviceWheel

DEFAULT_VENV = "~/.cache/cxredge/venv"
INSTALL_MB = 400  # a base install is ~210 MB; pip needs room to download and unpack the wheels too
PY_MIN = (3, 10)
MAX_FETCH = 64 * 2**20
MARKER = "cxredge-wheel.sha256"  # in the venv there: the sha256 of the device wheel installed last


@dataclass(frozen=True)
class RemoteSettings:
    targets: tuple[Target, ...]
    ssh: SshSettings = field(default_factory=SshSettings)
    python: str | None = None
    venv: str | None = None
    install: tuple[str, ...] | None = None  # pip install arguments; None: `cxredge` when the venv lacks it
    env: tuple[tuple[str, str], ...] = ()
    prefix: tuple[str, ...] = ()  # words run before python for the bench itself, e.g. taskset -c 3

    @property
    def use_venv(self) -> bool:
        return self.venv is not None or self.python is None


@dataclass(frozen=True)
class BenchJob:
    """What every device runs: one bundle, one split name, the bench options."""
    bundle: Path
    split: str
    bench_args: tuple[str, ...]
    chosen: dict  # where the images came from on this machine (dataset block)
    labels: Path | None = None
    wheel: "DeviceWheel | None" = None  # the cxredge running here, for a venv there (cxredge/remote/wheel.py)
    place: str | None = None  # another dataset than the run's own split: devices/<label>--<place>/


def device_folder(label: str, place: str | None) -> str:
    """A device's folder under devices/: its label for the run's own split, <label>--<dataset> for another."""
    return label if not place else f"{label}--{place}"


def rq(path: str) -> str:
    """A remote path for sh: quoted, with a leading ~ expanded there."""
    if path == "~":
        return '"$HOME"'
    if path.startswith("~/"):
        return '"$HOME"/' + shlex.quote(path[2:])
    return shlex.quote(path)


def remote_failure(target: Target, what: str, rc: int, err: str) -> CxrError:
    if "no space left on device" in err.lower():
        return CxrError(f"{target}: disk full there ({what}: No space left on device)")
    return CxrError(f"{target}: {what} failed there (exit {rc}: {last_line(err) or 'no message'})")


def facts_script(rs: RemoteSettings) -> str:
    py = rq(rs.python or "python3")
    venv = rq(rs.venv or DEFAULT_VENV) if rs.use_venv else "''"
    return f"""T="${{TMPDIR:-/tmp}}"
W=$(mktemp -d "$T/cxredge-remote.XXXXXX") || exit 3
echo "work=$W"
echo "machine=$(uname -m)"
echo "tmp_free_kb=$(df -Pk "$W" | awk 'NR==2 {{print $4}}')"
P={py}
if command -v "$P" >/dev/null 2>&1; then
  echo "python=$(command -v "$P")"
  echo "python_version=$("$P" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])' 2>/dev/null)"
fi
V={venv}
C=$(command -v "$P" 2>/dev/null)
if [ -n "$V" ]; then
  d="$V"; while [ ! -d "$d" ]; do d=$(dirname "$d"); done
  echo "venv=$V"
  echo "venv_free_kb=$(df -Pk "$d" | awk 'NR==2 {{print $4}}')"
  C=""; [ -x "$V/bin/python" ] && C="$V/bin/python" && echo "venv_python=$C"
  [ -f "$V/{MARKER}" ] && echo "wheel_sha256=$(head -c 64 "$V/{MARKER}")"
fi
[ -n "$C" ] && echo "cxredge=$({env_prefix(rs)}"$C" -m cxredge --version 2>/dev/null)"
exit 0
"""


def env_prefix(rs: RemoteSettings) -> str:
    return ("env " + " ".join(shlex.quote(f"{k}={v}") for k, v in rs.env) + " ") if rs.env else ""


def parse_facts(out: bytes) -> dict[str, str]:
    facts = {}
    for line in out.decode("utf-8", "replace").splitlines():
        key, sep, value = line.partition("=")
        if sep and key.isidentifier():
            facts[key] = value.strip()
    return facts


class DeviceRun:
    """Bench one device. `view` shows progress: phase(text, total) and advance(n)."""

    def __init__(self, target: Target, rs: RemoteSettings, job: BenchJob, view):
        self.t, self.rs, self.job, self.view = target, rs, job, view
        self.work: str | None = None
        self.f: dict[str, str] = {}
        self.output = b""

    def run(self, out_dir: Path) -> tuple[Path, dict]:
        t0 = time.perf_counter()
        with Connection(self.t, self.rs.ssh) as conn:
            self.conn = conn
            try:
                self.facts()
                python, installed = self.python()
                self.upload()
                self.bench(python)
                files = self.fetch()
            finally:
                self.clean()
        return self.save(out_dir, files, python, installed, time.perf_counter() - t0)

    def facts(self) -> None:
        self.view.phase("connecting", 1)
        rc, out, err = self.conn.run(facts_script(self.rs), "reading the device facts", timeout=60)
        self.f = parse_facts(out)
        work = self.f.get("work", "")
        self.work = work if "/cxredge-remote." in work else None
        if rc != 0 or self.work is None:
            raise remote_failure(self.t, "making a work folder (mktemp -d)", rc, err)
        if not self.f.get("python") and not self.f.get("venv_python"):
            if self.rs.python:
                raise CxrError(f"{self.t}: no Python at {self.rs.python} there (--remote-python)")
            raise CxrError(f"{self.t}: no python3 there (install it: sudo apt install python3 python3-venv; "
                           "or name one with --remote-python PATH)")
        version = self.f.get("python_version") or ""
        if version and not self.f.get("venv_python") and tuple(map(int, version.split(".")[:2])) < PY_MIN:
            raise CxrError(f"{self.t}: Python {version} there; cxredge needs 3.10 or newer (--remote-python PATH)")
        self.need_space("tmp_free_kb", self.job.bundle.stat().st_size * 2.2 / 2**20 + 32, self.work)
        self.view.advance(1)

    def need_space(self, key: str, need_mb: float, where: str) -> None:
        free = self.f.get(key, "")
        if free.isdigit() and int(free) / 1024 < need_mb:
            raise CxrError(f"{self.t}: disk full there: {int(free) / 1024:.0f} MB free in {where}, about "
                           f"{need_mb:.0f} MB needed")

    def python(self) -> tuple[str, list[str] | None]:
        """The interpreter to bench with there, and the pip arguments installed (None: nothing installed)."""
        rs = self.rs
        if not rs.use_venv:
            py = self.f["python"]
            if rs.install is not None:
                self.pip(py, list(rs.install))
            self.check_cxredge(py, f"{rs.python} has no cxredge: add --remote-venv DIR (the device wheel "
                               "is installed there), or install it there: python -m cxredge.remote.wheel")
            return py, list(rs.install) if rs.install is not None else None
        venv = self.f["venv"]
        py = f"{venv}/bin/python"
        if not self.f.get("venv_python"):
            self.view.phase(f"creating the venv {venv}", 1)
            self.need_space("venv_free_kb", INSTALL_MB, venv)
            rc, _, err = self.conn.run(f"{shlex.quote(self.f['python'])} -m venv {shlex.quote(venv)}",
                                       f"python3 -m venv {venv}", timeout=300)
            if rc != 0:
                hint = "; on Debian / Pi OS: sudo apt install python3-venv" if "ensurepip" in err else ""
                raise CxrError(str(remote_failure(self.t, f"python3 -m venv {venv}", rc, err)) + hint)
        if rs.install is not None:
            self.need_space("venv_free_kb", INSTALL_MB, venv)
            # what ARGS install is not the device wheel: forget the wheel, so a later plain run re-installs it
            self.conn.run(f"rm -f {rq(venv)}/{MARKER}", "forgetting the device wheel", timeout=60)
            self.f.pop("wheel_sha256", None)
            self.pip(py, list(rs.install))
            args = list(rs.install)
        else:
            args = self.install_wheel(py, venv)
        self.check_cxredge(py, f"cxredge does not run in the venv {venv}")
        return py, args

    def install_wheel(self, py: str, venv: str) -> list[str] | None:
        """pip install the device wheel there unless the venv holds that very wheel; the pip args, or None."""
        wheel = self.job.wheel
        if wheel is None:
            raise CxrError(f"{self.t}: no device wheel to install (internal error)")
        if self.f.get("venv_python") and self.f.get("cxredge") and self.f.get("wheel_sha256") == wheel.sha256:
            return None
        self.need_space("venv_free_kb", INSTALL_MB, venv)
        self.f.pop("wheel_sha256", None)
        dest = f"{self.work}/{wheel.path.name}"
        self.send(wheel.path, dest, f"sending {wheel.path.name} ({wheel.path.stat().st_size / 1e6:.2f} MB)")
        what = f"pip install {wheel.path.name}"
        self.view.phase(f"{what} and its dependencies", 1)
        q, env = shlex.quote, env_prefix(self.rs)
        pip = f"{env}{q(py)} -m pip --disable-pip-version-check"
        cmd = (f"{pip} uninstall -y -q {q('cxredge')} >/dev/null 2>&1; {pip} install {q(dest)} && "
               f"printf '%s\\n' {wheel.sha256} > {rq(venv)}/{MARKER}")
        rc, _, err = self.conn.run(cmd, what, timeout=3600)
        if rc != 0:
            raise remote_failure(self.t, what, rc, err)
        self.view.advance(1)
        self.f["wheel_sha256"] = wheel.sha256
        return [wheel.path.name]

    def pip(self, py: str, args: list[str]) -> None:
        """pip install ARGS there; local files among ARGS (a wheel, an sdist) are sent first."""
        remote_args = []
        for a in args:
            if not a.startswith("-") and Path(a).is_file():
                dest = f"{self.work}/{Path(a).name}"
                self.send(Path(a), dest, f"sending {Path(a).name}")
                a = dest
            remote_args.append(a)
        spec = " ".join(args)
        self.view.phase(f"pip install {spec}", 1)
        cmd = f"{env_prefix(self.rs)}{shlex.quote(py)} -m pip install --disable-pip-version-check " + \
            " ".join(shlex.quote(a) for a in remote_args)
        rc, _, err = self.conn.run(cmd, f"pip install {spec}", timeout=3600)
        if rc != 0:
            raise remote_failure(self.t, f"pip install {spec}", rc, err)
        self.view.advance(1)

    def check_cxredge(self, py: str, problem: str) -> None:
        rc, out, err = self.conn.run(f"{env_prefix(self.rs)}{shlex.quote(py)} -m cxredge --version",
                                     "cxredge --version", timeout=120)
        if rc != 0:
            raise CxrError(f"{self.t}: {problem} ({last_line(err) or f'exit {rc}'})")
        self.f["cxredge"] = out.decode("utf-8", "replace").strip()

    def send(self, local: Path, dest: str, what: str) -> None:
        self.view.phase(what, local.stat().st_size)
        rc, err = self.conn.send(local, dest, self.view.advance)
        if rc != 0:
            raise remote_failure(self.t, f"copying {local.name}", rc, err)

    def upload(self) -> None:
        self.send(self.job.bundle, f"{self.work}/bundle.zip",
                  f"sending the bundle ({self.job.bundle.stat().st_size / 1e6:.1f} MB)")
        if self.job.labels is not None:
            self.send(self.job.labels, f"{self.work}/labels.txt", "sending the labels")

    def bench(self, py: str) -> None:
        w = shlex.quote(self.work)
        args = ["-m", "cxredge", "bench", f"{self.work}/bundle.zip", "--split", self.job.split,
                *self.job.bench_args, "--out", f"{self.work}/out"]
        if self.job.labels is not None:
            args += ["--labels", f"{self.work}/labels.txt"]
        words = [*self.rs.prefix, py, *args]
        cmd = f"cd {w} && {env_prefix(self.rs)}COLUMNS=150 " + " ".join(shlex.quote(a) for a in words) + " 2>&1"
        self.view.phase("benching there (cxredge bench)", 1)
        rc, out, _ = self.conn.run(cmd, "cxredge bench", timeout=None)
        self.output = out
        if rc != 0:
            text = out.decode("utf-8", "replace")
            errors = [ln for ln in text.splitlines() if ln.strip().startswith("error:")]
            raise remote_failure(self.t, "cxredge bench", rc, errors[-1] if errors else text)
        self.view.advance(1)

    def fetch(self) -> dict[str, bytes]:
        """WORK/out as {file name: bytes}: regular files with safe names only, bench.json required."""
        from cxredge.edge.formats.bundle import safe_member

        self.view.phase("fetching bench.json", 1)
        rc, out, err = self.conn.run(f"cd {shlex.quote(self.work + '/out')} && tar -cf - .", "fetching results")
        if rc != 0:
            raise remote_failure(self.t, "fetching the results", rc, err)
        if len(out) > MAX_FETCH:
            raise CxrError(f"{self.t}: the results there are over {MAX_FETCH >> 20} MB: not a cxredge bench output")
        files: dict[str, bytes] = {}
        try:
            with tarfile.open(fileobj=io.BytesIO(out)) as tar:
                for m in tar.getmembers():
                    if m.isfile() and len(safe_member(m.name).parts) == 1 and m.size < MAX_FETCH:
                        files[safe_member(m.name).name] = tar.extractfile(m).read()
        except (tarfile.TarError, CxrError) as exc:
            raise CxrError(f"{self.t}: the results came back damaged ({exc})") from None
        if BENCH_JSON not in files:
            raise CxrError(f"{self.t}: cxredge bench there wrote no bench.json")
        self.view.advance(1)
        return files

    def clean(self) -> None:
        if self.work:
            try:
                self.conn.run(f"rm -rf {shlex.quote(self.work)}", "removing the work folder", timeout=60)
            except CxrError:
                pass

    def wheel_record(self, installed) -> dict | None:
        """The device wheel in the venv there: its version and sha256, and whether this run installed it."""
        w = self.job.wheel
        if w is None or not self.rs.use_venv or self.rs.install is not None:
            return None
        return {**w.to_dict(), "installed_now": installed is not None,
                "in_venv": self.f.get("wheel_sha256") == w.sha256}

    def save(self, out_dir: Path, files: dict[str, bytes], python: str, installed, wall_s: float) -> tuple[Path, dict]:
        """Write the device's files under out_dir/devices/<label>/ (<label>--<place>/ for another dataset than the
        run's own split), bench.json last and atomically."""
        try:
            doc = json.loads(files.pop(BENCH_JSON))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CxrError(f"{self.t}: bench.json from there is not JSON ({exc})") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("results"), list):
            raise CxrError(f"{self.t}: bench.json from there is not a cxredge bench.json")
        dest = out_dir / "devices" / device_folder(self.t.label, self.job.place)
        for name, data in files.items():
            write_bytes(dest / name, data)
        write_bytes(dest / "remote.log", self.output)
        doc.setdefault("dataset", {})["chosen_from"] = self.job.chosen
        doc["remote"] = {"target": str(self.t), "label": self.t.label, "python": python,
                         "venv": self.f.get("venv") if self.rs.use_venv else None, "installed": installed,
                         "cxredge": self.f.get("cxredge"), "bundle_sha256": sha256_file(self.job.bundle),
                         "wheel": self.wheel_record(installed),
                         "env": dict(self.rs.env), "prefix": list(self.rs.prefix), "wall_s": round(wall_s, 2),
                         "transport": "system OpenSSH client (BatchMode, host key checked)"}
        return write_json(dest / BENCH_JSON, doc), doc
