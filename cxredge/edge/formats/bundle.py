"""One zip to copy to a device: models, sidecars, labels, optionally test images and metrics. TF-free.

Layout inside the zip: the run directory's own (so a bundle reads like a run), plus bundle.json; both are
defined in cxredge/formats.py (BUNDLE_FORMAT).

Reading checks everything before extracting anything: every member name is plain names joined by '/'
(no absolute path, drive letter, backslash, '.', '..' or empty part), no links, no name twice (also by
case), a bounded member count and total size (counted again while unpacking); bundle.json is an object
whose `models` is a list of {path, sha256, size_bytes} naming .tflite members, and `files` (written since
issue 22; older bundles lack it) the same for every other member; a .tflite member that bundle.json does
not list is refused (nothing could verify it), and with `files` so is any unlisted member. After
unpacking, every listed member's size and sha256 are checked; each sidecar is then checked against its
model by `read_sidecar`.
"""
from __future__ import annotations

import hashlib
import json
import re
import stat
import zipfile
import zlib
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath

from cxredge.errors import CxrError
from cxredge.formats import BUNDLE_FORMAT, BUNDLE_JSON, LABELS_TXT, METRICS_JSON, RUN_JSON, TEST_IMAGES
from cxredge.io import atomic_path, sha256_file

MAX_UNPACKED = 4 * 2**30  # 4 GiB: larger is not a cxredge bundle
STORED_SUFFIXES = {".png", ".jpg", ".jpeg", ".zip"}
MAX_MEMBERS = 200_000
MAX_MANIFEST = 1 << 20  # bundle.json: 1 MiB
CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")


def write_bundle(out: Path, files: dict[str, Path], meta: dict) -> dict:
    """Write `files` ({member name: source path}) + bundle.json + labels.txt atomically into `out`.
    bundle.json lists the models and, under `files`, every other member with its sha256 and size."""
    def entry(name: str, data_or_path) -> dict:
        if isinstance(data_or_path, bytes):
            return {"path": name, "sha256": hashlib.sha256(data_or_path).hexdigest(), "size_bytes": len(data_or_path)}
        return {"path": name, "sha256": sha256_file(data_or_path), "size_bytes": data_or_path.stat().st_size}

    labels = "".join(f"{c}\n" for c in meta["classes"]).encode()
    models = [entry(name, src) for name, src in files.items() if name.endswith(".tflite")]
    others = [entry(LABELS_TXT, labels)] + [entry(name, src) for name, src in files.items()
                                              if not name.endswith(".tflite")]
    manifest = {"format": BUNDLE_FORMAT, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                **meta, "models": models, "files": others,
                "test_images": sum(1 for n in files if n.startswith(TEST_IMAGES + "/"))}
    with atomic_path(out) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(BUNDLE_JSON, json.dumps(manifest, indent=2) + "\n")
            zf.writestr(LABELS_TXT, labels)
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


def member_name(name: str) -> PurePosixPath:
    """A bundle member's path: plain names joined by '/', or CxrError. No absolute path, drive letter,
    backslash, empty, '.' or '..' part; a folder entry ('a/') keeps its single trailing slash out."""
    raw = name[:-1] if name.endswith("/") else name
    parts = raw.split("/")
    if (not raw or "\\" in raw or any(p in ("", ".", "..") for p in parts) or ":" in parts[0]
            or any(CONTROL_CHARS.search(p) for p in parts)):
        raise CxrError(f"unsafe member name {name!r} (absolute path, '.', '..', an empty part or a backslash)")
    return PurePosixPath(*parts)


def open_bundle(path: Path, dest: Path) -> dict:
    """Validate and extract a bundle into `dest`; return its bundle.json (checked: `check_manifest`)."""
    if not path.is_file():
        raise CxrError(f"{path}: bundle not found")
    if not zipfile.is_zipfile(path):
        raise CxrError(f"{path}: not a zip file (expected a bundle from `cxredge export`)")
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            names = check_members(path, infos)
            manifest = check_manifest(read_manifest(zf, names), names)
            extract(zf, infos, dest)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, RecursionError, RuntimeError,
            NotImplementedError, OSError, zlib.error) as exc:
        raise CxrError(f"{path}: damaged bundle ({type(exc).__name__}: {' '.join(str(exc).split())[:200]})") from None
    except CxrError as exc:
        msg = str(exc)
        raise CxrError(msg if msg.startswith(str(path)) else f"{path}: {msg}") from None
    verify_models(path, dest, manifest)
    return manifest


def read_manifest(zf: zipfile.ZipFile, names: dict[str, zipfile.ZipInfo]):
    info = names.get(BUNDLE_JSON)
    if info is None:
        raise CxrError(f"no {BUNDLE_JSON} inside (not a cxredge bundle)")
    if info.file_size > MAX_MANIFEST:
        raise CxrError(f"bundle.json is {info.file_size} bytes, more than a manifest holds")
    return json.loads(zf.read(info).decode("utf-8"))


def check_members(path: Path, infos: list[zipfile.ZipInfo]) -> dict[str, zipfile.ZipInfo]:
    """Every member name safe, no link, no name twice (also not by case), a bounded total: {name: info}."""
    if len(infos) > MAX_MEMBERS:
        raise CxrError(f"{path}: {len(infos)} members, more than a cxredge bundle holds")
    total, names, folded = 0, {}, set()
    for info in infos:
        rel = member_name(info.filename).as_posix()
        mode = info.external_attr >> 16
        if mode and stat.S_ISLNK(mode):
            raise CxrError(f"{path}: member {info.filename!r} is a symbolic link")
        if rel.casefold() in folded:
            raise CxrError(f"{path}: member {info.filename!r} appears twice (names differing only by case count)")
        folded.add(rel.casefold())
        if not info.is_dir():
            names[rel] = info
        total += info.file_size
    if total > MAX_UNPACKED:
        raise CxrError(f"{path}: unpacks to {total / 2**30:.1f} GiB, more than a cxredge bundle holds")
    return names


def check_entries(entries, key: str, names: dict[str, zipfile.ZipInfo], suffix: str = "") -> set[str]:
    """A manifest list of {path, sha256, size_bytes} naming members of the zip, each once: their paths."""
    from cxredge.edge.formats.sidecar import SHA256

    if not isinstance(entries, list):
        raise CxrError(f"bundle.json: {key} must be a list of {{path, sha256, size_bytes}} objects")
    listed: set[str] = set()
    for i, m in enumerate(entries):
        if not isinstance(m, dict):
            raise CxrError(f"bundle.json: {key}[{i}] must be an object, got {type(m).__name__}")
        p, sha, size = m.get("path"), m.get("sha256"), m.get("size_bytes")
        if not isinstance(p, str) or not p.endswith(suffix):
            raise CxrError(f"bundle.json: {key}[{i}].path must name a{' ' + suffix if suffix else ''} member")
        p = member_name(p).as_posix()
        if not isinstance(sha, str) or not SHA256.fullmatch(sha):
            raise CxrError(f"bundle.json: {key}[{i}].sha256 must be 64 lowercase hex digits")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise CxrError(f"bundle.json: {key}[{i}].size_bytes must be a non-negative integer")
        if p in listed:
            raise CxrError(f"bundle.json: {key}[{i}].path {p} is listed twice")
        if p not in names:
            raise CxrError(f"bundle.json lists {p} but the zip does not hold it")
        listed.add(p)
    return listed


def check_manifest(manifest, names: dict[str, zipfile.ZipInfo]) -> dict:
    """bundle.json's schema: format, `models` a list of {path, sha256, size_bytes} naming .tflite members
    of the zip (each once), `files` (bundles since issue 22) the same for every other member, `classes` a
    label list when present. A .tflite member that bundle.json does not list is refused: its bytes could
    not be checked against anything; so is any unlisted member of a bundle that has `files`."""
    from cxredge.edge.formats.sidecar import check_labels

    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
        raise CxrError(f"bundle.json is not {BUNDLE_FORMAT}")
    listed = check_entries(manifest.get("models"), "models", names, ".tflite")
    unlisted = sorted(n for n in names if n.lower().endswith(".tflite") and n not in listed)
    if unlisted:
        raise CxrError(f"{unlisted[0]} is not listed in bundle.json: an unlisted model cannot be verified, so the "
                       "bundle is refused (re-export it with `cxredge export`)")
    if manifest.get("files") is not None:
        listed |= check_entries(manifest["files"], "files", names)
        unlisted = sorted(n for n in names if n not in listed and n != BUNDLE_JSON)
        if unlisted:
            raise CxrError(f"{unlisted[0]} is not listed in bundle.json: its bytes cannot be verified, so the "
                           "bundle is refused")
    if manifest.get("classes") is not None:
        check_labels(manifest["classes"], "bundle.json: classes")
    return manifest


def extract(zf: zipfile.ZipFile, infos: list[zipfile.ZipInfo], dest: Path) -> None:
    """Write the (checked) members under `dest`, counting the bytes really unpacked."""
    written = 0
    for info in infos:
        target = dest.joinpath(*member_name(info.filename).parts)
        if info.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        with zf.open(info) as src, open(target, "wb") as dst:
            while chunk := src.read(1 << 20):
                written += len(chunk)
                if written > MAX_UNPACKED:
                    raise CxrError(f"unpacks to more than {MAX_UNPACKED / 2**30:.0f} GiB")
                dst.write(chunk)


def verify_models(path: Path, dest: Path, manifest: dict) -> None:
    """Every member bundle.json lists (models, and `files` where present): its size and sha256."""
    for m in manifest["models"] + (manifest.get("files") or []):
        f = dest.joinpath(*member_name(m["path"]).parts)
        if not f.is_file():
            raise CxrError(f"{path}: bundle.json lists {m['path']} but the zip does not hold it")
        if f.stat().st_size != m["size_bytes"] or sha256_file(f) != m["sha256"]:
            raise CxrError(f"{path}: {m['path']} does not match its sha256/size in bundle.json (damaged copy?)")


def collect_run(run_dir: Path, variants: list[str] | None, precisions: list[str] | None,
                test_split: list[tuple[Path, str]] | None) -> tuple[dict[str, Path], dict]:
    """Files of a run to bundle ({member: source}) and the bundle's metadata (classes, run)."""
    from cxredge.edge.data.sources import read_run, run_models
    from cxredge.edge.formats.sidecar import read_sidecar

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
