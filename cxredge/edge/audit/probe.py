"""The shortcut probe: how well non-diagnostic cues alone tell the classes apart. TF-free, numpy only.

For every class pair and every cue group (features.GROUPS, and all of them together) a binary L2
logistic regression (logreg.py) is cross-validated (stratified k-fold, seeded); its held-out accuracy
is set next to chance, the majority share of the pair. A multinomial probe on all cues gives the overall
accuracy. The probe is linear and sees ~100 numbers per image: what it finds is a lower bound on what
a CNN with 3 million weights can find in the same pixels.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cxredge.edge.audit import blas, logreg
from cxredge.edge.audit.features import GROUP_NAMES, GROUPS

# Warn when a pair is told apart far above chance: a normalised lift (accuracy - chance) / (1 - chance)
# of at least MIN_LIFT (for a balanced pair: accuracy >= 0.75), and at least Z_MIN standard errors of
# a chance-level probe above chance. Both chosen from measurements (label-shuffled probes, same-source
# controls, a same-source disease pair): docs/audit.md, benchmarks/results/audit/audit_thresholds.md.
MIN_LIFT = 0.5
Z_MIN = 5.0


@dataclass(frozen=True)
class ProbeSettings:
    folds: int = 5
    seed: int = 0
    l2: float = 1e-2
    max_per_class: int = 2000  # seeded subsample per class above this (the probe's cost is linear in n)
    min_lift: float = MIN_LIFT
    z_min: float = Z_MIN

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def flagged(accuracy: float, chance: float, n: int, min_lift: float = MIN_LIFT, z_min: float = Z_MIN) -> bool:
    """Far above chance: by `min_lift` of the way from chance to 1, and by `z_min` standard errors."""
    if chance >= 1.0:
        return False
    se = math.sqrt(chance * (1 - chance) / max(n, 1))
    return (accuracy - chance) / (1 - chance) >= min_lift and (accuracy - chance) / se >= z_min


def subsample(y: np.ndarray, cap: int, seed: int) -> np.ndarray:
    """Indices: every image of a class with <= cap images, else a seeded random cap of them (sorted)."""
    rng = np.random.default_rng(seed)
    keep = [idx if len(idx) <= cap else np.sort(rng.choice(idx, cap, replace=False))
            for idx in (np.flatnonzero(y == c) for c in np.unique(y))]
    return np.sort(np.concatenate(keep))


def run_probe(features: dict[str, np.ndarray], y: np.ndarray, classes: tuple[str, ...],
              settings: ProbeSettings = ProbeSettings()) -> dict:
    """The audit.json `probe` block."""
    with blas.single_thread():
        return _run_probe(features, y, classes, settings)


def _run_probe(features, y, classes, settings) -> dict:
    keep = subsample(y, settings.max_per_class, settings.seed)
    x = {g: features[g][keep] for g in GROUPS}
    x["all"] = np.hstack([x[g] for g in GROUPS])
    y = y[keep]
    counts = np.bincount(y, minlength=len(classes))
    folds = min(settings.folds, int(counts[counts > 0].min()))
    out = {"features": {g: {"n": len(GROUP_NAMES[g]), "names": GROUP_NAMES[g]} for g in GROUPS},
           "cv_folds": folds, "n": int(len(y)), "settings": settings.to_dict(),
           "accuracy": None, "chance": round(float(counts.max() / len(y)), 4), "pairs": []}
    if folds < 2:
        out["skipped"] = (f"a class has {int(counts[counts > 0].min())} image(s): "
                          f"at least 2 are needed to cross-validate")
        return out
    present = np.flatnonzero(counts)
    y_mc = np.searchsorted(present, y)
    pred = logreg.cross_val_predict(x["all"], y_mc, len(present), folds, settings.seed, settings.l2)
    out["accuracy"] = round(float((pred == y_mc).mean()), 4)
    for ai, a in enumerate(present):
        for b in present[ai + 1:]:
            out["pairs"].append(_pair(x, y, int(a), int(b), classes, folds, settings))
    return out


def _pair(x: dict[str, np.ndarray], y: np.ndarray, a: int, b: int, classes, folds: int,
          settings: ProbeSettings) -> dict:
    sel = (y == a) | (y == b)
    yy = (y[sel] == b).astype(np.int64)
    n = int(sel.sum())
    chance = float(max(yy.mean(), 1 - yy.mean()))
    by_cue = {}
    for g, xg in x.items():
        pred = logreg.cross_val_predict(xg[sel], yy, 2, folds, settings.seed, settings.l2)
        by_cue[g] = round(float((pred == yy).mean()), 4)
    best = max(GROUPS, key=lambda g: by_cue[g])
    cue = best
    if not flagged(by_cue[best], chance, n, settings.min_lift, settings.z_min) and \
            flagged(by_cue["all"], chance, n, settings.min_lift, settings.z_min):
        cue = "all"  # no single group suffices, together they do
    return {"classes": [classes[a], classes[b]], "accuracy": by_cue[cue], "chance": round(chance, 4), "cue": cue,
            "n": n, "accuracy_by_cue": by_cue,
            "flagged": flagged(by_cue[cue], chance, n, settings.min_lift, settings.z_min)}
