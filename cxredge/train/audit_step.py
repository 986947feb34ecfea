"""`cxredge train`'s fast audit: duplicates and the shortcut probe on the images train decodes anyway
(rows collected while load_data checks each image, no second decode, no image kept), before any
training; warnings printed, audit.json in the run folder. TF-free."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from rich.console import Console

from cxredge.edge.audit import AuditSettings, audit
from cxredge.edge.audit.console import print_warnings
from cxredge.edge.audit.facts import read_header
from cxredge.edge.audit.probe import ProbeSettings
from cxredge.edge.audit.run import Collected, luma, rel_name
from cxredge.edge.data.dataset import Dataset
from cxredge.formats import AUDIT_JSON
from cxredge.io import write_json
from cxredge.train.data import TrainData


class AuditRows:
    """load_data's on_image callback: one audit row per decoded image (its cues, hashes, header facts;
    about 1 KB an image, the pixels are not kept)."""

    def __init__(self, ds: Dataset):
        self.ds, self.t = ds, 0.0
        self.rows = Collected("decoded 224x224 training inputs (cxredge train)")

    def __call__(self, split: str, path: Path, label: int, rgb: np.ndarray) -> None:
        t0 = time.perf_counter()
        img = luma(rgb)
        self.rows.add(rel_name(self.ds, path), split, int(label), read_header(path), img, img)
        self.t += time.perf_counter() - t0

    def finish(self, data: TrainData) -> Collected:
        self.rows.unreadable += [rel_name(self.ds, Path(p)) for p in data.skipped]
        self.rows.seconds = self.t
        return self.rows


def pre_training_audit(data: TrainData, rows: AuditRows, out: Path, seed: int, console: Console) -> dict:
    """Run it, print its warnings, write out/audit.json; return the summary run.json keeps."""
    t0 = time.perf_counter()
    with console.status("audit: duplicates and shortcut probe on the decoded images"):
        result = audit(data.dataset, rows.finish(data), AuditSettings(probe=ProbeSettings(seed=seed)))
    seconds = round(time.perf_counter() - t0 + rows.t, 2)
    result["seconds"]["total"] = seconds
    write_json(Path(out) / AUDIT_JSON, result)
    print_warnings(console, result, prefix="audit warning")
    kinds = sorted({w["kind"] for w in result["warnings"]})
    console.print(f"audit: {len(result['warnings'])} warning(s){' (' + ', '.join(kinds) + ')' if kinds else ''} in "
                  f"{seconds:.1f} s -> {Path(out) / AUDIT_JSON} (`cxredge audit DATA` reads the original files too; "
                  f"--no-audit skips this)", highlight=False)
    return {"file": AUDIT_JSON, "warnings": len(result["warnings"]), "kinds": kinds, "seconds": seconds,
            "probe_accuracy": result["probe"]["accuracy"], "probe_chance": result["probe"]["chance"]}
