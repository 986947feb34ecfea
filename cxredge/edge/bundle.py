"""One zip to copy to a device: models, sidecars, labels, optionally test images and metrics. TF-free.

Layout inside the zip: the run directory's own (so a bundle reads like a run), plus bundle.json; both are
defined in cxredge/formats.py (BUNDLE_FORMAT).

Reading checks every member name before extracting anything: no absolute paths, no '..', no links,
no drive letters, a bounded total size, and the sha256 of every model listed in bundle.json.
"""
from __future__ import annotations

import json
import stat
import zipfile
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath

from cxredge.errors import CxrError
from cxredge.formats import BUNDLE_FORMAT, BUNDLE_JSON, LABELS_TXT, METRICS_JSON, RUN_JSON, TEST_IMAGES
from cxredge.io import atomic_path, sha256_file

MAX_UNPACKED = 4 * 2**30  # 4 GiB: larger is not a cxredge bundle
STORED_SUFFIXES = {".png", ".jpg", ".jpeg", ".zip"}


def write_bundle(out: Path, files: dict[str, Path], meta: dict) -> dict:
    """Write `files` ({member name: source path}) + bundle.json + labels.txt atomically into `out`."""
    models = [{"path": name, "sha256": sha256_file(src), "size_bytes": src.stat().st_size}
              for name, src in files.items() if name.endswith(".tflite")]
    manifest = {"format": BUNDLE_FORMAT, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                **meta, "models": models,
                "test_images": sum(1 for n in files if n.startswith(TEST_IMAGES + "/"))}
    with atomic_path(out) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(BUNDLE_JSON, json.dumps(manifest, indent=2) + "\n")
            zf.writestr(LABELS_TXT, "".join(f"{c}\n" for c in meta["classes"]))
            for name, src in files.items():
                method = zipfile.ZIP_STORED if src.suffix.lower() in STORED_SUFFIXES else zipfile.ZIP_DEFLATED
                zf.write(src, name, compress_type=method)
    return manifest


def is_bundle(path: Path) -> bool:
    return path.suffix.lower() == ".zip"


def safe_member(name: str) -> PurePosixPath:
    """The member's relative path, or CxrError for anything that could land outside the target folder."""
    p = PurePosixPath(name.replace("\\", "/"))
    if not name or p.is_absolute() or ".." in p.parts or (p.parts and ":" in p.parts[0]):
        raise CxrError(f"unsafe member name {name!r} (absolute path or '..')")
    return p


def open_bundle(path: Path, dest: Path) -> dict:
    """Validate and extract a bundle into `dest`; return its bundle.json."""
    if not path.is_file():
        raise CxrError(f"{path}: bundle not found")
    if not zipfile.is_zipfile(path):
        raise CxrError(f"{path}: not a zip file (expected a bundle from `cxredge export`)")
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            check_members(path, infos)
            if BUNDLE_JSON not in zf.namelist():
                raise CxrError(f"{path}: no bundle.json inside (not a cxredge bundle)")
            manifest = json.loads(zf.read(BUNDLE_JSON))
            if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
                raise CxrError(f"{path}: bundle.json is not {BUNDLE_FORMAT}")
            for info in infos:
                target = dest.joinpath(*safe_member(info.filename).parts)
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "wb") as dst:
                    while chunk := src.read(1 << 20):
                        dst.write(chunk)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CxrError(f"{path}: damaged bundle ({type(exc).__name__}: {exc})") from None
    except CxrError as exc:
        msg = str(exc)
        raise CxrError(msg if msg.startswith(str(path)) else f"{path}: {msg}") from None
    verify_models(path, dest, manifest)
    return manifest


def check_members(path: Path, infos: list[zipfile.ZipInfo]) -> None:
    total = 0
    for info in infos:
        safe_member(info.filename)
        mode = info.external_attr >> 16
        if mode and stat.S_ISLNK(mode):
            raise CxrError(f"{path}: member {info.filename!r} is a symbolic link")
        total += info.file_size
    if total > MAX_UNPACKED:
        raise CxrError(f"{path}: unpacks to {total / 2**30:.1f} GiB, more than a cxredge bundle holds")


def verify_models(path: Path, dest: Path, manifest: dict) -> None:
    for m in manifest.get("models", []):
        f = dest.joinpath(*safe_member(str(m.get("path", ""))).parts)
        if not f.is_file():
            raise CxrError(f"{path}: bundle.json lists {m.get('path')} but the zip does not hold it")
        if sha256_file(f) != m.get("sha256"):
            raise CxrError(f"{path}: {m.get('path')} does not match its sha256 in bundle.json (damaged copy?)")


def collect_run(run_dir: Path, variants: list[str] | None, precisions: list[str] | None,
                test_split: list[tuple[Path, str]] | None) -> tuple[dict[str, Path], dict]:
    """Files of a run to bundle ({member: source}) and the bundle's metadata (classes, run)."""
    from cxredge.edge.sidecar import read_sidecar
    from cxredge.edge.sources import read_run, run_models

    models = [p for p in run_models(run_dir)
              if (not variants or p.parent.name in variants) and (not precisions or p.stem in precisions)]
    if not models:
        what = f" matching --variant {','.join(variants)}" if variants else ""
        what += f" --precision {','.join(precisions)}" if precisions else ""
        raise CxrError(f"--run {run_dir}: no .tflite models{what} (run `cxredge quantize` first)")
    files: dict[str, Path] = {}
    classes = None
    for p in models:
        side = read_sidecar(p)
        if side is None:
            raise CxrError(f"{p}: no sidecar {p.with_suffix('.json').name}; bundles carry labels from sidecars")
        if classes is not None and list(side["labels"]) != classes:
            raise CxrError(f"{p}: labels differ from the other models of the run ({', '.join(classes)})")
        classes = list(side["labels"])
        rel = f"{p.parent.name}/{p.name}"
        files[rel] = p
        files[rel[:-len(".tflite")] + ".json"] = p.with_suffix(".json")
        metrics = p.parent / METRICS_JSON
        if metrics.is_file():
            files[f"{p.parent.name}/{METRICS_JSON}"] = metrics
    run = read_run(run_dir)
    if run is not None:
        files[RUN_JSON] = run_dir / RUN_JSON
    for src, cls in test_split or []:
        files[f"{TEST_IMAGES}/{cls}/{src.name}"] = src
    return files, {"classes": classes, "run": run}
