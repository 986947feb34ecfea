"""The report's data-audit section: the warnings and the probe table of the run's audit.json (written by
`cxredge train`, or copied there from `cxredge audit`). TF-free."""
from __future__ import annotations

from pathlib import Path

from cxredge.edge.audit.writers import probe_section
from cxredge.edge.report.inputs import check_audit
from cxredge.errors import CxrError
from cxredge.formats import AUDIT_JSON
from cxredge.io import read_json


def audit_section(doc, run_dir: Path) -> dict | None:
    """The section; returns audit.json (checked) for the summary card, or None (absent or unusable)."""
    path = run_dir / AUDIT_JSON
    if not path.is_file():
        doc.notes.append(f"{run_dir}: no audit.json (trained with --no-audit?): data audit left out")
        return None
    try:
        a = check_audit(path, read_json(path))
    except CxrError as exc:
        doc.warnings.append(f"data audit left out: {exc}")
        return None
    d = {k: v or [] for k, v in (a.get("duplicates") or {}).items()}
    doc.h(2, "Data audit: shortcuts, duplicates, leakage")
    doc.p(f"From `{path.name}` ({a.get('source', '?')}): {len(a.get('warnings') or [])} warning(s); duplicate groups: "
          f"exact {len(d.get('exact', []))}, near {len(d.get('near', []))}, across classes "
          f"{len(d.get('cross_class', []))}, "
          f"across splits {len(d.get('cross_split', []))}.")
    for w in a.get("warnings") or []:
        doc.p(f"Warning ({w['kind']}): {w['message']}")
    if a.get("probe"):
        probe_section(doc, a["probe"], level=3)
    return a
