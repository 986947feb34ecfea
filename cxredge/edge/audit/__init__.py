"""Data audit: file facts, duplicates, and a shortcut probe on cues that should carry no diagnosis. TF-free.

facts.py (what the files say), jpeg.py (quality from quantization tables), features.py (the probe's
cues and the perceptual hash), duplicates.py, logreg.py + probe.py (the cross-validated probe),
checks.py (warnings), run.py (end to end), writers.py (json / md / html), console.py (terminal).
"""
from cxredge.edge.audit.run import AuditSettings, audit, collect_files, collect_loaded

__all__ = ["AuditSettings", "audit", "collect_files", "collect_loaded"]
