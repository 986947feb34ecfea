"""Decode a DICOM radiograph into the 8-bit gray image the model sees, per PS3.3 C.11 (grayscale pipeline). TF-free.

Order: stored values (signed per Pixel Representation, masked to Bits Stored by pydicom) -> Pixel Padding
mask (Pixel Padding Value [.. Pixel Padding Range Limit], in stored values) -> Modality LUT (Rescale
Slope/Intercept, or the Modality LUT Sequence) -> VOI LUT (the first VOI LUT Sequence item, else the first
Window Center/Width with its VOI LUT Function: LINEAR, LINEAR_EXACT or SIGMOID) -> MONOCHROME1 inverted ->
0..255 -> padding set to black. Without any VOI LUT or window the fallback is the min..max of the pixels
inside the padding mask (the same stretch 16-bit PNGs get). The resize to 224x224 is the caller's (images.py),
so a DICOM and a PNG go through the same bilinear resize.

Refused with one line naming the file: multi-frame objects, objects without pixels (SR, presentation
states...), modalities other than CR/DX/DR/OT (CT, MR, ...: unless allowed with --any-modality, or
CXREDGE_ANY_MODALITY=1), colour other than RGB/YBR, a transfer syntax no installed plugin decodes (the
pip package to install is named). pydicom is imported only here, on the first DICOM: it is the
`cxredge[dicom]` extra.
"""
from __future__ import annotations

import contextlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cxredge.edge.data.limits import MAX_PIXELS
from cxredge.errors import CxrError

DICOM_SUFFIXES = {".dcm", ".dicom", ".dic"}
RASTER_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}  # never sniffed for the preamble
XRAY_MODALITIES = ("CR", "DX", "DR", "OT")
INSTALL = "pip install 'cxredge[dicom]'"
_settings = {"any_modality": False}

# transfer syntax family -> the pip package whose plugin decodes it
_PLUGINS = (("JPEG 2000", "pylibjpeg-openjpeg"), ("JPEG-LS", "pylibjpeg-libjpeg"), ("JPEG", "pylibjpeg-libjpeg"),
            ("RLE", "pylibjpeg-rle"), ("High-Throughput", "pylibjpeg-openjpeg"))


@dataclass(frozen=True)
class DicomFacts:
    """What the header says about one image; nothing here identifies a patient."""
    modality: str
    photometric: str
    bits_stored: int
    view_position: str
    transfer_syntax: str
    rows: int
    columns: int
    voi: str  # "window" | "voi-lut" | "min-max" | "none (RGB)"

    def as_dict(self) -> dict:
        return dict(self.__dict__)

    def record(self) -> dict:
        """The per-image record outputs carry (predict): view position, photometric, bits stored."""
        return {"view_position": self.view_position or None, "photometric": self.photometric,
                "bits_stored": self.bits_stored, "voi": self.voi}


def allow_any_modality(flag: bool) -> None:
    """--any-modality: accept CT, MR, ... objects too (the radiograph checks still apply)."""
    _settings["any_modality"] = bool(flag)


def any_modality() -> bool:
    return _settings["any_modality"] or os.environ.get("CXREDGE_ANY_MODALITY", "") not in ("", "0")


def is_dicom(path: Path) -> bool:
    """A .dcm/.dicom/.dic name, or a file (not .png/.jpg/...) whose bytes 128..132 are the 'DICM' marker."""
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    if path.suffix.lower() in RASTER_SUFFIXES:
        return False
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:] == b"DICM"


def _pydicom():
    try:
        import pydicom
    except ImportError:
        raise CxrError(f"DICOM files need pydicom: {INSTALL}") from None
    return pydicom


def read_dataset(path: Path, pixels: bool = True):
    pydicom = _pydicom()
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(path, stop_before_pixels=not pixels, force=path.suffix.lower() in DICOM_SUFFIXES)
    except FileNotFoundError:
        raise CxrError(f"{path}: image not found") from None
    except (InvalidDicomError, OSError, ValueError, KeyError, TypeError, EOFError) as exc:
        raise CxrError(f"{path}: unreadable or corrupt DICOM ({type(exc).__name__}: {exc})") from None


def facts_of(ds, voi: str = "") -> DicomFacts:
    def text(key):
        return str(ds.get(key, "") or "")

    def number(key):
        return int(ds.get(key, 0) or 0)

    return DicomFacts(modality=text("Modality"), photometric=text("PhotometricInterpretation"),
                      bits_stored=number("BitsStored"), view_position=text("ViewPosition"),
                      transfer_syntax=_ts_name(ds), rows=number("Rows"), columns=number("Columns"), voi=voi)


@contextlib.contextmanager
def guarded(path: Path):
    """pydicom's warnings silenced (one per odd element, per file), and any failure of a broken or hostile
    file (pydicom converts elements lazily, so errors surface anywhere) turned into one line naming it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            yield
        except CxrError:
            raise
        except Exception as exc:  # noqa: BLE001 - outside input: every failure is this file's fault
            detail = _short((str(exc).splitlines() or [""])[0], 160)
            raise CxrError(f"{path}: unreadable or corrupt DICOM ({type(exc).__name__}: {detail})") from None


def read_facts(path: str | Path) -> DicomFacts:
    """Header facts only (no pixel decoding)."""
    path = Path(path)
    with guarded(path):
        ds = read_dataset(path, pixels=False)
        return facts_of(ds, _voi_kind(ds))


def check(ds, path: Path) -> None:
    """The refusals: anything that is not one single-frame radiograph this pipeline can decode."""
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        sop = _short(getattr(ds.get("SOPClassUID", None), "name", None) or "no SOP Class UID")
        raise CxrError(f"{path}: DICOM object has no image (SOP class {sop})")
    if "PixelData" not in ds:
        raise CxrError(f"{path}: float pixel data (parametric maps) is not a radiograph")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        raise CxrError(f"{path}: multi-frame DICOM ({frames} frames); cxredge reads single-frame radiographs")
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    if rows < 1 or cols < 1:
        raise CxrError(f"{path}: DICOM image of {cols} x {rows} pixels is empty")
    if rows * cols > MAX_PIXELS:  # the one limit of every decoder (edge/data/limits.py), from the header
        raise CxrError(f"{path}: DICOM image of {cols} x {rows} pixels is larger than cxredge reads "
                       f"({MAX_PIXELS // 1_000_000} megapixels)")
    modality = str(ds.get("Modality", "") or "")
    if modality and modality not in XRAY_MODALITIES and not any_modality():
        raise CxrError(f"{path}: DICOM modality {_short(modality)} is not a radiograph ({'/'.join(XRAY_MODALITIES)}); "
                       "pass --any-modality to read it anyway")
    pi = str(ds.get("PhotometricInterpretation", ""))
    if pi not in ("MONOCHROME1", "MONOCHROME2", "RGB", "YBR_FULL", "YBR_FULL_422", "YBR_RCT", "YBR_ICT"):
        raise CxrError(f"{path}: DICOM photometric interpretation {_short(pi) or 'missing'} is not supported "
                       "(MONOCHROME1, MONOCHROME2, RGB, YBR)")
    meta = getattr(ds, "file_meta", None)
    ts = meta.get("TransferSyntaxUID") if meta is not None else None
    if ts is not None and ts.is_compressed:
        from pydicom.pixels import get_decoder

        try:
            decoder = get_decoder(ts)
        except NotImplementedError:
            raise CxrError(f"{path}: DICOM transfer syntax {_short(ts.name)} cannot be decoded by pydicom") from None
        if not decoder.is_available:
            plugin = next((p for key, p in _PLUGINS if key in ts.name), "pylibjpeg")
            raise CxrError(f"{path}: DICOM transfer syntax {_short(ts.name)} needs a decoder plugin: "
                           f"pip install {plugin} (all of them: {INSTALL})")


def decode(path: str | Path) -> tuple[np.ndarray, DicomFacts]:
    """(H, W) uint8 gray (or (H, W, 3) uint8 RGB) after the grayscale pipeline, and the header facts."""
    path = Path(path)
    with guarded(path):
        return _decode(path)


def _decode(path: Path) -> tuple[np.ndarray, DicomFacts]:
    ds = read_dataset(path)
    check(ds, path)  # the header's refusals, the pixel limit of every decoder (edge/data/limits.py) among them
    stored = ds.pixel_array
    pi = str(ds.PhotometricInterpretation)
    if pi not in ("MONOCHROME1", "MONOCHROME2"):
        if stored.ndim != 3 or stored.shape[-1] != 3:
            raise CxrError(f"{path}: DICOM {_short(pi)} pixel data has shape {stored.shape}, "
                           "expected (rows, columns, 3)")
        return _rgb_to_8bit(stored, ds), facts_of(ds, "none (RGB)")
    if stored.ndim != 2:
        raise CxrError(f"{path}: DICOM pixel data has shape {stored.shape}, expected (rows, columns)")
    out, voi = grayscale(stored, ds)
    return out, facts_of(ds, voi)


def grayscale(stored: np.ndarray, ds) -> tuple[np.ndarray, str]:
    """The grayscale pipeline on one frame of stored values -> (uint8 presentation values, how VOI was done)."""
    from pydicom.pixels import apply_modality_lut

    inside = ~padding_mask(stored, ds)
    values = np.asarray(apply_modality_lut(stored, ds), dtype=np.float64)
    y, kind = _voi(values, ds, inside)
    if str(ds.PhotometricInterpretation) == "MONOCHROME1":
        y = 1.0 - y
    out = np.rint(np.clip(y, 0.0, 1.0) * 255.0).astype(np.uint8)
    out[~inside] = 0
    return out, kind


def padding_mask(stored: np.ndarray, ds) -> np.ndarray:
    """True where Pixel Padding Value (to Pixel Padding Range Limit) marks a pixel as not part of the image."""
    pad = ds.get("PixelPaddingValue", None)
    if pad is None or isinstance(pad, (list, tuple, bytes)):
        return np.zeros(stored.shape, dtype=bool)
    limit = ds.get("PixelPaddingRangeLimit", None)
    if limit is None or isinstance(limit, (list, tuple, bytes)):
        return stored == int(pad)
    lo, hi = sorted((int(pad), int(limit)))
    return (stored >= lo) & (stored <= hi)


def _voi_kind(ds) -> str:
    if ds.get("VOILUTSequence"):
        return "voi-lut"
    if _first(ds.get("WindowCenter", None)) is not None and _first(ds.get("WindowWidth", None)) is not None:
        return "window"
    return "min-max"


def _voi(values: np.ndarray, ds, inside: np.ndarray) -> tuple[np.ndarray, str]:
    """Modality values -> [0, 1] presentation values (before any MONOCHROME1 inversion)."""
    kind = _voi_kind(ds)
    if kind == "voi-lut":
        from pydicom.pixels import apply_voi

        bits = int(ds.VOILUTSequence[0].LUTDescriptor[2]) or 16
        lut = apply_voi(np.rint(values).astype(np.int64), ds, index=0)  # a LUT indexes integer values
        return np.asarray(lut, dtype=np.float64) / float(2 ** bits - 1), kind
    if kind == "window":
        c = float(_first(ds.WindowCenter))
        w = float(_first(ds.WindowWidth))
        fn = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").upper()
        if fn == "SIGMOID" and w > 0:
            return 1.0 / (1.0 + np.exp(-4.0 * (values - c) / w)), kind
        if fn == "LINEAR_EXACT" and w > 0:
            return (values - c) / w + 0.5, kind
        if w >= 1 and fn != "LINEAR_EXACT":
            if w == 1:  # the standard's threshold
                return (values >= c - 0.5).astype(np.float64), kind
            return (values - (c - 0.5)) / (w - 1.0) + 0.5, kind
        # a window width the standard forbids: fall back to the min-max stretch below
    pick = values[inside] if inside.any() else values
    lo, hi = float(pick.min()), float(pick.max())
    return ((values - lo) / (hi - lo) if hi > lo else np.zeros_like(values)), "min-max"


def _rgb_to_8bit(stored: np.ndarray, ds) -> np.ndarray:
    bits = int(ds.get("BitsStored", 8) or 8)
    arr = stored.astype(np.float64)
    if bits > 8:
        arr = arr * (255.0 / (2 ** bits - 1))
    return np.clip(np.rint(arr), 0, 255).astype(np.uint8)


def _short(value, n: int = 64) -> str:
    """A header value quoted in a message, printable and cut short (a broken header can hold anything)."""
    text = "".join(c if c.isprintable() else "?" for c in str(value))
    return text if len(text) <= n else text[:n] + "..."


def _first(value):
    """The first of a multi-valued element (Window Center/Width may hold several)."""
    if value is None:
        return None
    try:
        return value[0] if not isinstance(value, (str, bytes)) and len(value) else value
    except TypeError:
        return value


def _ts_name(ds) -> str:
    meta = getattr(ds, "file_meta", None)
    ts = meta.get("TransferSyntaxUID") if meta is not None else None
    return getattr(ts, "name", "") or ""


def to_png(path: str | Path, dest: Path) -> Path:
    """The decoded 8-bit image as a PNG without any metadata: what a bundle ships instead of a DICOM (the header
    carries the patient's name, IDs, dates); load_image gives the same pixels from either file."""
    from PIL import Image

    pixels, _ = decode(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels, "L" if pixels.ndim == 2 else "RGB").save(dest, format="PNG")
    return dest


def summarise(paths) -> dict | None:
    """run.json / audit.json's `dicom` block: how many files, and counts of each header fact that matters
    (view position, photometric interpretation, bits stored, modality, transfer syntax, how VOI was done)."""
    from collections import Counter

    files = [Path(p) for p in paths if is_dicom(Path(p))]
    if not files:
        return None
    counts: dict[str, Counter] = {k: Counter() for k in ("view_position", "photometric", "bits_stored", "modality",
                                                          "transfer_syntax", "voi")}
    unreadable = 0
    for p in files:
        try:
            facts = read_facts(p).as_dict()
        except CxrError:
            unreadable += 1
            continue
        for k, c in counts.items():
            c[str(facts[k] or "not recorded")] += 1
    return {"files": len(files), "unreadable_headers": unreadable,
            **{k: dict(c.most_common()) for k, c in counts.items()}}
