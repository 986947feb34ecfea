"""The --data reading options train, audit and bench share: label-table columns, --label-map, patients, DICOM. TF-free.

Each verb lists the same typer options (defined once here) and turns them into one DataOptions
(cxredge/edge/data/table.py) with `data_options(...)`, which also applies --any-modality to the DICOM decoder.
"""
from __future__ import annotations

from typing import Optional

import typer

from cxredge.edge.data.table import DataOptions

T = "--data TABLE.csv: "
PATH_COLUMN = typer.Option("path", "--path-column", help=T + "the column of image paths (relative to the table).")
LABEL_COLUMN = typer.Option("label", "--label-column", help=T + "the column of labels.")
PATIENT_COLUMN = typer.Option(None, "--patient-column",
                              help=T + "the column of patient IDs (default: patient_id, if present).")
SPLIT_COLUMN = typer.Option(None, "--split-column",
                            help=T + "the column of train/val/test (default: split, if present).")
PATH_PATTERN = typer.Option("{}", "--path-pattern",
                            help=T + "where a path column value points, {} standing for the value, e.g. "
                                 "'images/{}.dcm' (docs/dicom.md).")
LABEL_MAP = typer.Option(None, "--label-map", help="Merge, rename or drop labels: 'Viral Pneumonia=Pneumonia, Other=-' "
                         "('-' drops, '*' = any other label) or a .json file.")
PATIENT_REGEX = typer.Option(None, "--patient-regex", help="Patient ID from file names (group 1), e.g. "
                             "'person(\\d+)_': splits keep each patient in one split.")
ANY_MODALITY = typer.Option(False, "--any-modality",
                            help="DICOM: also read modalities other than CR/DX/DR/OT (CT, MR, ...).")


def data_options(path_column: str = "path", label_column: str = "label", patient_column: Optional[str] = None,
                 split_column: Optional[str] = None, path_pattern: str = "{}", label_map: Optional[str] = None,
                 patient_regex: Optional[str] = None, any_modality: bool = False) -> DataOptions:
    from cxredge.edge.data.dicom import allow_any_modality
    from cxredge.edge.data.patients import compile_regex

    allow_any_modality(any_modality)
    compile_regex(patient_regex)  # a bad regex fails before any image is read
    return DataOptions(path_column=path_column, label_column=label_column, patient_column=patient_column,
                       split_column=split_column, path_pattern=path_pattern, label_map=label_map,
                       patient_regex=patient_regex, any_modality=any_modality)
