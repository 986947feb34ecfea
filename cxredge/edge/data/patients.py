"""Patients: where their IDs come from, the salted keys that replace them, the patient-level split, leakage. TF-free.

A patient ID is read from a label table's patient column, from a DICOM file's PatientID, or from the file
name with --patient-regex (group 1, else the whole match; e.g. `person(\\d+)_` for Kermany). It is
replaced at once by a key: sha256 over a salt and the ID, 16 hex digits. The salt is random per process
(CXREDGE_PATIENT_SALT fixes it, for keys comparable between runs); no raw ID is kept in memory past the
scan or written anywhere. The split does not depend on the keys: patients are ordered by their first
file's path, then shuffled with the seed, so a seed gives the same split whatever the salt.
"""
from __future__ import annotations

import hashlib
import os
import random
import re
import secrets
from collections import Counter
from pathlib import Path

from cxredge.errors import CxrError

_SALT = os.environ.get("CXREDGE_PATIENT_SALT", "").encode() or secrets.token_bytes(16)
SPLITS = ("train", "val", "test")


def patient_key(raw: str) -> str:
    """The salted hash that stands for a patient everywhere cxredge keeps one."""
    return hashlib.sha256(_SALT + b"\0" + str(raw).strip().encode()).hexdigest()[:16]


def compile_regex(pattern: str | None) -> re.Pattern | None:
    if not pattern:
        return None
    try:
        rx = re.compile(pattern)
    except re.error as exc:
        raise CxrError(f"--patient-regex {pattern!r}: not a regular expression ({exc})") from None
    return rx


def from_name(rx: re.Pattern, path: Path) -> str | None:
    """The patient a file name names, or None when the regex does not match it."""
    m = rx.search(path.name)
    if not m:
        return None
    return m.group(1) if m.groups() else m.group(0)


def from_dicom(path: Path) -> str | None:
    """A DICOM file's PatientID (header only), or None (not DICOM, no ID, unreadable: the decoder says why)."""
    from cxredge.edge.data.dicom import guarded, is_dicom, read_dataset

    if not is_dicom(path):
        return None
    try:
        with guarded(path):
            pid = str(read_dataset(path, pixels=False).get("PatientID", "") or "").strip()
    except CxrError:
        return None
    return pid or None


def find_keys(paths: list[Path], regex: str | None = None, given: dict[Path, str] | None = None
              ) -> tuple[dict[Path, str], str | None, int]:
    """Patient keys per path: a table's IDs (`given`), else --patient-regex on the name, else DICOM PatientID.
    Returns (keys, where they came from, files without a patient: each counts as its own patient)."""
    rx = compile_regex(regex)
    raw: dict[Path, str] = {}
    sources = Counter()
    for p in paths:
        pid, how = None, None
        if given and given.get(p):
            pid, how = given[p], "table"
        elif rx is not None:
            pid, how = from_name(rx, p), f"--patient-regex {regex}"
        else:
            pid, how = from_dicom(p), "DICOM PatientID"
        if pid:
            raw[p] = pid
            sources[how] += 1
    if not raw:
        return {}, None, len(paths)
    keys = {p: patient_key(r) for p, r in raw.items()}
    return keys, ", ".join(sources), len(paths) - len(raw)


def group_split(files: list[tuple[Path, int]], keys: dict[Path, str], n_classes: int, ratios, seed: int
                ) -> dict[str, tuple[tuple[Path, int], ...]]:
    """A seeded split that keeps every patient in one split, stratified by each patient's most frequent label.

    Per class, its patients are shuffled and dealt to val, then test, until each holds its share of that
    class's images (the patient that crosses a share still goes whole), the rest to train.
    """
    groups: dict[str, list[tuple[Path, int]]] = {}
    for f in files:
        groups.setdefault(keys.get(f[0]) or f"file:{f[0]}", []).append(f)
    ordered = sorted(groups.values(), key=lambda g: min(str(p) for p, _ in g))
    rng = random.Random(seed)
    out: dict[str, list] = {s: [] for s in SPLITS}
    for label in range(n_classes):
        mine = [g for g in ordered if _top_label(g) == label]
        rng.shuffle(mine)
        total = sum(len(g) for g in mine)
        want_val, want_test = round(total * ratios[1]), round(total * ratios[2])
        n_val = n_test = 0
        for g in mine:
            if n_val < want_val:
                out["val"] += g
                n_val += len(g)
            elif n_test < want_test:
                out["test"] += g
                n_test += len(g)
            else:
                out["train"] += g
    for s in SPLITS:
        if ratios[SPLITS.index(s)] > 0 and not out[s]:
            raise CxrError(f"too few patients to make a {s} split (seed {seed}); add images or give a split column "
                           "or train/val/test folders")
    return {s: tuple(sorted(v)) for s, v in out.items()}


def _top_label(group: list[tuple[Path, int]]) -> int:
    """The most frequent label of a patient's images; ties go to the smallest label (deterministic)."""
    counts = Counter(y for _, y in group)
    best = max(counts.values())
    return min(y for y, n in counts.items() if n == best)


def leaks(splits: dict[str, tuple[tuple[Path, int], ...]], keys: dict[Path, str]) -> dict[str, int]:
    """Patients found in two splits: {'train/test': n_patients, ...} (empty when none, or no patients known)."""
    if not keys:
        return {}
    per = {s: {keys[p] for p, _ in files if p in keys} for s, files in splits.items() if s in SPLITS}
    names = [s for s in SPLITS if s in per]
    out = {}
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            n = len(per[a] & per[b])
            if n:
                out[f"{a}/{b}"] = n
    return out


def describe(splits, keys: dict[Path, str], source: str | None, unmatched: int, how: str) -> dict | None:
    """run.json / audit.json's `patients` block: counts only, never a key or an ID."""
    if not keys:
        return None
    per = {s: len({keys[p] for p, _ in files if p in keys}) for s, files in splits.items() if s in SPLITS}
    return {"source": source, "split": how, "patients": len(set(keys.values())), "per_split": per,
            "files_without_patient": unmatched, "leaks": leaks(splits, keys)}
