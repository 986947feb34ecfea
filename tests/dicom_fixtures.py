"""DICOM files made at test time with pydicom from the real chest X-rays in tests/fixtures/cxr/ (see its
SOURCE.md), with the header variants hospitals send: MONOCHROME1/2, 12 bits in 16 with a rescale and a
VOI window, signed 16-bit, JPEG Lossless / JPEG 2000 / RLE compressed, multi-frame, CT, PHI in the header.

JPEG Lossless (process 14, selection value 1) has no encoder in pydicom or its plugins, so `jpeg_lossless`
below writes that bitstream itself (ITU-T T.81 H.1: predictor 1, one Huffman table); the decoder under
test is pylibjpeg-libjpeg's.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

CXR = Path(__file__).parent / "fixtures" / "cxr"
CLASSES = ("Bacterial_Pneumonia", "COVID", "Normal", "Viral_Pneumonia")
PHI = {"PatientName": "Doe^Janet^Q", "PatientID": "MRN-99812345", "PatientBirthDate": "19470311",
       "StudyDate": "20240117", "SeriesDate": "20240117", "AcquisitionDate": "20240117",
       "InstitutionName": "St Elsewhere General Hospital", "AccessionNumber": "ACC778899001",
       "ReferringPhysicianName": "House^Gregory", "StudyID": "STUDY4455"}
UID_ROOT = "1.2.826.0.1.3680043.10.999."  # the UIDs we make end with a counter; the test greps for the root


def real_png(name: str = "Normal") -> np.ndarray:
    """A committed real chest X-ray, 128x128 uint8."""
    return np.asarray(Image.open(CXR / f"{name}.png").convert("L"))


def write_dicom(path: Path, stored: np.ndarray, *, photometric: str = "MONOCHROME2", bits_stored: int | None = None,
                slope: float | None = None, intercept: float | None = None, window=None,
                voi_function: str | None = None, voi_lut: tuple[list[int], list[int]] | None = None,
                padding: int | None = None, modality: str = "DX", view: str | None = "PA", syntax: str = "explicit",
                phi: dict | None = None, uid_n: int = 1, sop_class: str = "1.2.840.10008.5.1.4.1.1.1.1",
                preamble: bool = True, modality_lut: list[int] | None = None) -> Path:
    """One DICOM file from stored values (2-D, or 3-D for multi-frame). syntax: explicit | rle | j2k | jpegll."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    stored = np.asarray(stored)
    signed = stored.dtype.kind == "i"
    bits = bits_stored or (8 if stored.dtype.itemsize == 1 else 16)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = f"{UID_ROOT}{uid_n}.3"
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = f"{UID_ROOT}{uid_n}.3"
    ds.StudyInstanceUID = f"{UID_ROOT}{uid_n}.1"
    ds.SeriesInstanceUID = f"{UID_ROOT}{uid_n}.2"
    ds.Modality = modality
    if view:
        ds.ViewPosition = view
    for k, v in (phi or {}).items():
        setattr(ds, k, v)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    frames = stored.shape[0] if stored.ndim == 3 else 1
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.Rows, ds.Columns = stored.shape[-2:]
    ds.BitsAllocated = stored.dtype.itemsize * 8
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = int(signed)
    if slope is not None or intercept is not None:
        ds.RescaleSlope = slope if slope is not None else 1
        ds.RescaleIntercept = intercept if intercept is not None else 0
        ds.RescaleType = "US"
    if window is not None:
        centers, widths = window if isinstance(window[0], (list, tuple)) else ([window[0]], [window[1]])
        ds.WindowCenter = centers if len(centers) > 1 else centers[0]
        ds.WindowWidth = widths if len(widths) > 1 else widths[0]
    if voi_function:
        ds.VOILUTFunction = voi_function
    if voi_lut is not None:
        item = Dataset()
        item.add_new(0x00283002, "US", voi_lut[0])  # LUT Descriptor
        item.add_new(0x00283006, "US", voi_lut[1])  # LUT Data
        ds.VOILUTSequence = [item]
    if modality_lut is not None:
        item = Dataset()
        item.add_new(0x00283002, "US", [len(modality_lut), 0, 16])  # LUT Descriptor: entries, first value, bits
        item.add_new(0x00283006, "US", modality_lut)  # LUT Data
        item.ModalityLUTType = "US"
        ds.ModalityLUTSequence = [item]
    if padding is not None:
        ds.PixelPaddingValue = padding
    ds.PixelData = stored.astype(stored.dtype.newbyteorder("<")).tobytes()
    ds["PixelData"].VR = "OW" if ds.BitsAllocated > 8 else "OB"
    if syntax == "rle":
        ds.compress("1.2.840.10008.1.2.5", encoding_plugin="pydicom")
    elif syntax == "j2k":
        ds.compress("1.2.840.10008.1.2.4.90", encoding_plugin="pylibjpeg")
    elif syntax == "jpegll":
        from pydicom.encaps import encapsulate

        ds.PixelData = encapsulate([jpeg_lossless(stored, bits)])
        ds["PixelData"].VR = "OB"
        ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.70"
    elif syntax != "explicit":
        raise ValueError(syntax)
    ds.save_as(path, enforce_file_format=preamble)
    return path


def jpeg_lossless(img: np.ndarray, precision: int) -> bytes:
    """A baseline-free lossless JPEG (SOF3, predictor 1, point transform 0) of unsigned `precision`-bit gray."""
    h, w = img.shape
    x = img.astype(np.int64) & ((1 << precision) - 1)
    pred = np.empty_like(x)
    pred[0, 0] = 1 << (precision - 1)
    pred[0, 1:] = x[0, :-1]
    pred[1:, 0] = x[:-1, 0]
    pred[1:, 1:] = x[1:, :-1]
    diff = (x - pred) % 65536
    diff = np.where(diff > 32768, diff - 65536, diff)
    # one Huffman table: the 17 difference categories (0..16) all get 5-bit codes 00000..10000
    bits = [0, 0, 0, 0, 17] + [0] * 11
    out = bytearray()
    acc, nacc = 0, 0
    for d in diff.ravel().tolist():
        cat = int(abs(d)).bit_length()
        acc, nacc = (acc << 5) | cat, nacc + 5
        if 0 < cat < 16:
            acc, nacc = (acc << cat) | ((d if d > 0 else d - 1) & ((1 << cat) - 1)), nacc + cat
        while nacc >= 8:
            nacc -= 8
            byte = (acc >> nacc) & 0xFF
            out.append(byte)
            if byte == 0xFF:
                out.append(0)
        acc &= (1 << nacc) - 1
    if nacc:
        byte = ((acc << (8 - nacc)) | ((1 << (8 - nacc)) - 1)) & 0xFF
        out.append(byte)
        if byte == 0xFF:
            out.append(0)
    sof = bytes([0xFF, 0xC3, 0, 11, precision, h >> 8, h & 255, w >> 8, w & 255, 1, 1, 0x11, 0])
    dht = bytes([0xFF, 0xC4, 0, 3 + 16 + 17, 0x00, *bits, *range(17)])
    sos = bytes([0xFF, 0xDA, 0, 8, 1, 1, 0x00, 1, 0, 0])
    return b"\xff\xd8" + sof + dht + sos + bytes(out) + b"\xff\xd9"


def twelve_bit(gray8: np.ndarray) -> tuple[np.ndarray, dict]:
    """8-bit gray -> 12-bit stored MONOCHROME1 values with a rescale and a window that map back to it exactly.

    stored s = 4087 - 16 v (4095 - 16 v - 8: the middle of v's 16 levels, inverted); modality m = 2 s - 4096 =
    4078 - 32 v (slope 2, intercept -4096); window center -1.5, width 8161: LINEAR gives
    y = (m + 2) / 8160 + 0.5 = 1 - v / 255, and MONOCHROME1 inverts it back to v / 255 exactly.
    """
    s = 4087 - 16 * gray8.astype(np.int32)
    return s.astype(np.uint16), dict(photometric="MONOCHROME1", bits_stored=12, slope=2.0, intercept=-4096.0,
                                     window=(-1.5, 8161.0))
