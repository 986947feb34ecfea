"""The device wheel: the cxredge that runs here, packed as a lean wheel for another machine. TF-free.

A device cannot `pip install cxredge` (the package index does not know it), so `bench --remote` packs the
package that is running on this machine into a wheel, copies it over SSH and pip-installs it there (its
dependencies come from the device's index). The wheel holds exactly the files that run here, minus what a
device never uses: the training weights (weights/) and the bundled sample images (data/sample/).
It is deterministic (sorted members, fixed timestamps): the same source gives the same sha256, and it is
cached under ~/.cache/cxredge/wheels/<version>-<source hash>/.

    python -m cxredge.remote.wheel [OUT_DIR]     # write the device wheel to OUT_DIR (default dist/)
"""
from __future__ import annotations

import base64
import hashlib
import os
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from cxredge import __version__
from cxredge.errors import CxrError
from cxredge.io import atomic_path, sha256_file

NAME = "cxredge"
LEFT_OUT = ("weights/**", "data/sample/**")  # a device needs neither the training weights nor the sample
STAMP = (1980, 1, 1, 0, 0, 0)  # the earliest zip date: a reproducible wheel
ENTRY_POINTS = "[console_scripts]\ncxredge = cxredge.cli.main:main\n"


@dataclass(frozen=True)
class DeviceWheel:
    path: Path
    version: str
    sha256: str
    source_sha256: str  # of the packed files and the metadata: the cache key

    def to_dict(self) -> dict:
        return {"file": self.path.name, "version": self.version, "sha256": self.sha256,
                "source_sha256": self.source_sha256, "size_bytes": self.path.stat().st_size}


def package_files(package: Path) -> dict[str, Path]:
    """{archive name: file} of the package, sorted, without caches, weights and sample images."""
    files = {}
    for path in sorted(package.rglob("*")):
        rel = path.relative_to(package).as_posix()
        if not path.is_file() or "__pycache__" in rel.split("/") or path.suffix in (".pyc", ".pyo"):
            continue
        if left_out(rel):
            continue
        files[f"{NAME}/{rel}"] = path
    if f"{NAME}/__init__.py" not in files:
        raise CxrError(f"{package}: not the cxredge package (no __init__.py)")
    return files


def left_out(rel: str) -> bool:
    """True for a package file under one of the LEFT_OUT folders."""
    return any(rel.startswith(pattern.removesuffix("**")) for pattern in LEFT_OUT)


def requirements(package: Path) -> tuple[str, list[str]]:
    """(Requires-Python, base Requires-Dist) of the running cxredge: its pyproject.toml when it runs from a
    source checkout, else the installed distribution's metadata."""
    pyproject = package.parent / "pyproject.toml"
    if pyproject.is_file():
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10: fall back to the installed metadata
            tomllib = None
        if tomllib is not None:
            project = tomllib.loads(pyproject.read_text()).get("project", {})
            if project.get("name") == NAME:
                return project.get("requires-python", ">=3.10"), list(project.get("dependencies", []))
    from importlib import metadata

    try:
        dist = metadata.distribution(NAME)
    except metadata.PackageNotFoundError:
        raise CxrError("cannot build the device wheel: cxredge is neither installed (pip install .) nor run "
                       "from its source folder") from None
    reqs = [r for r in (dist.requires or []) if "extra ==" not in r.replace("extra==", "extra ==")]
    return dist.metadata.get("Requires-Python") or ">=3.10", reqs


def metadata_text(version: str, python: str, reqs: list[str]) -> str:
    lines = ["Metadata-Version: 2.1", f"Name: {NAME}", f"Version: {version}",
             "Summary: cxredge for an edge device: TF-free predict, bench, explain, audit (no training weights)",
             "License: Apache-2.0", f"Requires-Python: {python}", *[f"Requires-Dist: {r}" for r in reqs]]
    return "\n".join(lines) + "\n"


def record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def members(package: Path, version: str) -> dict[str, bytes]:
    """Every member of the wheel, RECORD last."""
    python, reqs = requirements(package)
    info = f"{NAME}-{version}.dist-info"
    out = {name: path.read_bytes() for name, path in package_files(package).items()}
    out[f"{info}/METADATA"] = metadata_text(version, python, reqs).encode()
    out[f"{info}/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: cxredge.remote.wheel\nRoot-Is-Purelib: true\n" \
                           b"Tag: py3-none-any\n"
    out[f"{info}/entry_points.txt"] = ENTRY_POINTS.encode()
    record = [record_line(n, d) for n, d in out.items()] + [f"{info}/RECORD,,"]
    out[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()
    return out


def source_hash(files: dict[str, bytes]) -> str:
    h = hashlib.sha256()
    for name, data in files.items():
        h.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    return h.hexdigest()


def write_wheel(path: Path, files: dict[str, bytes]) -> None:
    with atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
            for name, data in files.items():
                info = zipfile.ZipInfo(name, STAMP)
                info.external_attr = 0o644 << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(info, data)
        os.chmod(tmp, 0o644)  # a wheel anyone may read, like pip's


def cache_root() -> Path:
    if os.environ.get("CXREDGE_CACHE"):
        return Path(os.environ["CXREDGE_CACHE"]) / "wheels"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cxredge" / "wheels"


def device_wheel(out_dir: Path | None = None, package: Path | None = None) -> DeviceWheel:
    """The device wheel of the running cxredge: from the cache when the same source was packed before."""
    package = package or Path(__file__).resolve().parents[1]
    version = __version__
    files = members(package, version)
    key = source_hash(files)
    folder = out_dir or cache_root() / f"{version}-{key[:16]}"
    path = folder / f"{NAME}-{version}-py3-none-any.whl"
    try:
        if not (path.is_file() and (folder / "source.sha256").is_file()
                and (folder / "source.sha256").read_text().strip() == key):
            folder.mkdir(parents=True, exist_ok=True)
            write_wheel(path, files)
            with atomic_path(folder / "source.sha256") as tmp:
                tmp.write_text(key + "\n")
    except OSError as exc:
        raise CxrError(f"{path}: cannot write the device wheel ({exc.strerror or exc})") from None
    return DeviceWheel(path, version, sha256_file(path), key)


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else Path("dist")
    try:
        w = device_wheel(out)
    except CxrError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{w.path} ({w.path.stat().st_size / 1e6:.2f} MB, sha256 {w.sha256})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
