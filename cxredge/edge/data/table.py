"""Label tables: `--data TABLE.csv` -> the images, labels, patients and splits it names. TF-free.

Columns (names configurable): path (relative to the table's folder, through --path-pattern, e.g.
`stage_2_train_images/{}.dcm` for RSNA's patientId column), label, and optionally patient_id and split
(train | val | test; validation/valid/dev mean val). Rows naming the same file twice with the same label
are merged (RSNA lists a patient once per box); with two labels they are an error.

--label-map merges, renames and drops labels: `"Viral Pneumonia=Pneumonia,No Finding=Normal,Other=-"` or a
JSON file `{"Viral Pneumonia": "Pneumonia", "Other": null}`. `-` (or null) drops; `*` matches every label
not named (`*=-` keeps only the labels named). A label holding `|` (NIH ChestX-ray14's Finding Labels) is
first looked up whole, then label by label: the labels left after mapping and dropping decide; a row with
none left is dropped by the map, a row with two or more is dropped as multi-label. Both counts are kept.
"""
from __future__ import annotations

import csv
import json
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from cxredge.errors import CxrError

TABLE_SUFFIXES = {".csv", ".tsv"}
SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
               "dev": "val", "test": "test", "testing": "test"}
DROP = "-"


@dataclass(frozen=True)
class DataOptions:
    """How to read --data: the table's column names and path pattern, the label map, the patient regex."""
    path_column: str = "path"
    label_column: str = "label"
    patient_column: str | None = None  # None: a column named patient_id when there is one
    split_column: str | None = None  # None: a column named split when there is one
    path_pattern: str = "{}"
    label_map: str | None = None
    patient_regex: str | None = None
    any_modality: bool = False  # DICOM: accept CT, MR, ... (cxredge/edge/data/dicom.py)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None) -> "DataOptions":
        return cls(**{k: v for k, v in (d or {}).items() if k in cls.__dataclass_fields__})

    def is_default(self) -> bool:
        return self == DataOptions()


@dataclass
class Row:
    path: Path
    label: str
    patient: str | None
    split: str | None
    line: int


def parse_label_map(text: str | None) -> dict[str, str | None]:
    """`A=B,C=-` or a .json file -> {label: new label or None (drop)}."""
    if not text:
        return {}
    if text.strip().lower().endswith(".json"):
        path = Path(text)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise CxrError(f"--label-map {path}: file not found") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CxrError(f"--label-map {path}: not a JSON object ({exc})") from None
        if not isinstance(raw, dict) or not all(isinstance(v, str) or v is None for v in raw.values()):
            raise CxrError(f"--label-map {path}: expected a JSON object of label -> new label (or null to drop)")
        return {str(k).strip(): (None if v is None or v.strip() == DROP else v.strip()) for k, v in raw.items()}
    out: dict[str, str | None] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        if "=" not in part:
            raise CxrError(f"--label-map {text!r}: {part.strip()!r} is not FROM=TO (use TO '-' to drop)")
        old, new = (s.strip() for s in part.split("=", 1))
        if not old or not new:
            raise CxrError(f"--label-map {text!r}: {part.strip()!r} has an empty side")
        out[old] = None if new == DROP else new
    return out


def map_label(raw: str, mapping: dict[str, str | None]) -> tuple[str | None, str]:
    """(label or None, why): why is 'kept', 'dropped' (by the map / empty) or 'multi-label'."""
    raw = raw.strip()
    if raw in mapping:
        return (mapping[raw], "kept") if mapping[raw] is not None else (None, "dropped")
    parts = [p.strip() for p in raw.split("|")] if "|" in raw else [raw]
    out = []
    for p in parts:
        new = mapping[p] if p in mapping else (mapping["*"] if "*" in mapping else p)
        if new and new not in out:
            out.append(new)
    if not out:
        return None, "dropped"
    if len(out) > 1:
        return None, "multi-label"
    return out[0], "kept"


def read_table(table: Path, opts: DataOptions) -> tuple[list[Row], dict]:
    """The kept rows and the counts (rows, kept, dropped by the map, multi-label, merged duplicates)."""
    if not table.is_file():
        raise CxrError(f"--data {table}: " + ("table not found" if not table.exists() else "not a file"))
    try:
        text = table.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise CxrError(f"--data {table}: unreadable table ({exc})") from None
    if "\0" in text:
        raise CxrError(f"--data {table}: holds NUL bytes: not a text table (CSV/TSV)")
    reader = csv.DictReader(text.splitlines(), delimiter="\t" if table.suffix.lower() == ".tsv" else ",")
    try:
        header = [(h or "").strip() for h in (reader.fieldnames or [])]
    except csv.Error as exc:
        raise CxrError(f"--data {table} line 1: not a CSV header ({exc})") from None
    reader.fieldnames = header
    patient_col = _column(table, header, opts.patient_column, "patient_id", "--patient-column")
    split_col = _column(table, header, opts.split_column, "split", "--split-column")
    for option, col in (("--path-column", opts.path_column), ("--label-column", opts.label_column)):
        if col not in header:
            raise CxrError(f"--data {table}: no column {col!r} (has {_names(header) or 'no header'}); "
                           f"name it with {option}")
    if "{}" not in opts.path_pattern:
        raise CxrError(f"--path-pattern {opts.path_pattern!r}: must hold {{}} (where the path column's value goes)")
    mapping = parse_label_map(opts.label_map)
    base = table.parent.resolve()
    counts = Counter()
    rows: dict[Path, Row] = {}
    try:
        for line, rec in enumerate(reader, start=2):
            _add_row(table, line, rec, opts, patient_col, split_col, mapping, base, counts, rows)
    except csv.Error as exc:
        raise CxrError(f"--data {table} line {reader.line_num}: not a CSV row ({exc})") from None
    if not rows:
        raise CxrError(f"--data {table}: no rows left ({counts['rows']} rows, "
                       f"{counts['dropped_by_label_map']} dropped by --label-map, "
                       f"{counts['dropped_multi_label']} multi-label)")
    missing = [r for r in rows.values() if not r.path.is_file()]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise CxrError(f"--data {table} line {missing[0].line}: {missing[0].path.relative_to(base)} not found{more}")
    counts["kept"] = len(rows)
    info = {"rows": counts["rows"], "kept": counts["kept"],
            "dropped_by_label_map": counts["dropped_by_label_map"],
            "dropped_multi_label": counts["dropped_multi_label"],
            "duplicate_rows_merged": counts["duplicate_rows_merged"],
            "columns": {"path": opts.path_column, "label": opts.label_column, "patient": patient_col,
                        "split": split_col}}
    return list(rows.values()), info


def _add_row(table, line, rec, opts, patient_col, split_col, mapping, base, counts, rows) -> None:
    counts["rows"] += 1
    value = (rec.get(opts.path_column) or "").strip()
    if not value:
        raise CxrError(f"--data {table} line {line}: empty {opts.path_column!r}")
    path = _inside(table, line, base, opts.path_pattern.replace("{}", value))
    label, why = map_label(rec.get(opts.label_column) or "", mapping)
    if label is None:
        counts["dropped_by_label_map" if why == "dropped" else "dropped_multi_label"] += 1
        return
    split = None
    if split_col:
        raw_split = (rec.get(split_col) or "").strip().lower()
        split = SPLIT_NAMES.get(raw_split)
        if split is None:
            raise CxrError(f"--data {table} line {line}: split {raw_split[:40]!r} is not train, val or test")
    patient = ((rec.get(patient_col) or "").strip() or None) if patient_col else None
    if path in rows:
        old = rows[path]
        if old.label != label:
            raise CxrError(f"--data {table} lines {old.line} and {line}: {value} is labelled both "
                           f"{old.label!r} and {label!r}")
        counts["duplicate_rows_merged"] += 1
        return
    rows[path] = Row(path, label, patient, split, line)


def _column(table: Path, header: list[str], name: str | None, default: str, option: str) -> str | None:
    if name is None:
        return default if default in header else None
    if name not in header:
        raise CxrError(f"{option} {name}: --data {table} has no such column (has {_names(header)})")
    return name


def _names(header: list[str], n: int = 12) -> str:
    shown = ", ".join(h[:40] for h in header[:n])
    return shown + (f", ... ({len(header)} columns)" if len(header) > n else "")


def _inside(table: Path, line: int, base: Path, rel: str) -> Path:
    """The table's path, which must stay inside the table's folder (no absolute paths, no ..)."""
    if "\0" in rel:
        raise CxrError(f"--data {table} line {line}: path holds a NUL byte")
    p = Path(rel)
    if p.is_absolute() or ".." in p.parts:
        raise CxrError(f"--data {table} line {line}: path {rel!r} must be relative to the table's folder, "
                       "without '..'")
    return base / p
