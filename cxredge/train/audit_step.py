"""`cxredge train`'s fast audit: duplicates and the shortcut probe on the images it has just decoded
(no second decode), before any training; warnings printed, audit.json in the run folder. TF-free."""
from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console

from cxredge.edge.audit import AuditSettings, audit, collect_loaded
from cxredge.edge.audit.console import print_warnings
from cxredge.edge.audit.probe import ProbeSettings
from cxredge.formats import AUDIT_JSON
from cxredge.io import write_json
from cxredge.train.data import TrainData


def pre_training_audit(data: TrainData, out: Path, seed: int, console: Console) -> dict:
    """Run it, print its warnings, write out/audit.json; return the summary run.json keeps."""
    t0 = time.perf_counter()
    with console.status("audit: duplicates and shortcut probe on the decoded images"):
        result = audit(data.dataset, collect_loaded(data.dataset, data.splits),
                       AuditSettings(probe=ProbeSettings(seed=seed)))
    seconds = round(time.perf_counter() - t0, 2)
    result["seconds"]["total"] = seconds
    write_json(Path(out) / AUDIT_JSON, result)
    print_warnings(console, result, prefix="audit warning")
    kinds = sorted({w["kind"] for w in result["warnings"]})
    console.print(f"audit: {len(result['warnings'])} warning(s){' (' + ', '.join(kinds) + ')' if kinds else ''} in "
                  f"{seconds:.1f} s -> {Path(out) / AUDIT_JSON} (`cxredge audit DATA` reads the original files too; "
                  f"--no-audit skips this)", highlight=False)
    return {"file": AUDIT_JSON, "warnings": len(result["warnings"]), "kinds": kinds, "seconds": seconds,
            "probe_accuracy": result["probe"]["accuracy"], "probe_chance": result["probe"]["chance"]}
