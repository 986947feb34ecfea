"""Findings -> warnings ({kind, classes, message}): shortcut (probe), format (file facts), label_conflict
and leakage (duplicates). TF-free.
"""
from __future__ import annotations

from collections import Counter

import numpy as np

from cxredge.edge.audit.features import GROUP_TITLES, GROUPS
from cxredge.edge.audit.probe import MIN_LIFT, Z_MIN, flagged

SOURCE_NOT_DISEASE = "a model may learn the source, not the disease"
HISTOGRAM_CAVEAT = " (the histogram also reflects lung opacity: part of this may be the disease)"
EXAMPLES = 2


def shortcut_warnings(probe: dict) -> list[dict]:
    out = []
    for p in probe.get("pairs", []):
        if not p["flagged"]:
            continue
        a, b = p["classes"]
        how = "alone" if p["cue"] in GROUPS else "together"
        others = [f"{GROUP_TITLES[g]} {p['accuracy_by_cue'][g]:.2f}" for g in GROUPS
                  if g != p["cue"] and flagged(p["accuracy_by_cue"][g], p["chance"], p["n"],
                                               probe["settings"]["min_lift"], probe["settings"]["z_min"])]
        also = f"; also {', '.join(others)}" if others else ""
        caveat = HISTOGRAM_CAVEAT if p["cue"] == "histogram" else ""
        out.append({"kind": "shortcut", "classes": [a, b], "cue": p["cue"],
                    "message": f"{a} vs {b}: told apart from {GROUP_TITLES[p['cue']]} {how} with {p['accuracy']:.2f} "
                               f"accuracy (chance {p['chance']:.2f}{also}): {SOURCE_NOT_DISEASE}{caveat}"})
    return out


def format_cues(categories: list[dict[str, str]], labels: np.ndarray, classes: tuple[str, ...],
                min_lift: float = MIN_LIFT, z_min: float = Z_MIN) -> tuple[list[dict], list[dict]]:
    """Per class pair and file fact: the accuracy of guessing the class from the fact's value alone (the
    majority class of each value; facts have <= a few values, so this needs no cross-validation).
    Returns (pairs table, format warnings: the strongest flagged fact per pair)."""
    facts = list(categories[0]) if categories else []
    table, warnings = [], []
    for a in range(len(classes)):
        for b in range(a + 1, len(classes)):
            sel = np.flatnonzero((labels == a) | (labels == b))
            if not len(sel) or (labels[sel] == a).all() or (labels[sel] == b).all():
                continue
            row = {"classes": [classes[a], classes[b]], "n": int(len(sel)),
                   "chance": round(float(max((labels[sel] == a).mean(), (labels[sel] == b).mean())), 4),
                   "accuracy_by_fact": {}}
            for fact in facts:
                values = Counter((categories[i][fact], int(labels[i])) for i in sel)
                best = Counter()
                for (v, _), n in values.items():
                    best[v] = max(best[v], n)
                row["accuracy_by_fact"][fact] = round(sum(best.values()) / len(sel), 4)
            table.append(row)
            hits = [f for f in facts if flagged(row["accuracy_by_fact"][f], row["chance"], row["n"], min_lift, z_min)]
            if hits:
                fact = max(hits, key=lambda f: row["accuracy_by_fact"][f])
                warnings.append(_format_warning(row, fact, categories, labels, sel, classes, a, b))
    return table, warnings


def _format_warning(row, fact, categories, labels, sel, classes, a, b) -> dict:
    def top(c: int) -> str:
        vals = Counter(categories[i][fact] for i in sel if labels[i] == c)
        n = sum(vals.values())
        return ", ".join(f"{v} {k / n:.0%}" for v, k in vals.most_common(2))
    return {"kind": "format", "classes": row["classes"], "fact": fact,
            "message": f"{classes[a]} vs {classes[b]}: told apart by the {fact} alone ({classes[a]}: {top(a)}; "
                       f"{classes[b]}: {top(b)}) with {row['accuracy_by_fact'][fact]:.2f} accuracy "
                       f"(chance {row['chance']:.2f}): a model may learn the file, not the disease"}


def duplicate_warnings(duplicates: dict, where: dict[str, tuple[str, str]]) -> list[dict]:
    """`where`: path name -> (split, class)."""
    out = []
    by_pair: dict[tuple[str, ...], list[list[str]]] = {}
    for g in duplicates["cross_class"]:
        by_pair.setdefault(tuple(sorted({where[n][1] for n in g})), []).append(g)
    for cls, groups in sorted(by_pair.items()):
        out.append({"kind": "label_conflict", "classes": list(cls),
                    "message": f"{' / '.join(cls)}: {len(groups)} duplicate group(s) carry different labels, "
                               f"e.g. {_examples(groups)}: at least one label of each is wrong, or the "
                               f"image is ambiguous"})
    if duplicates["cross_split"]:
        spans = Counter("/".join(sorted({where[n][0] for n in g})) for g in duplicates["cross_split"])
        classes = sorted({where[n][1] for g in duplicates["cross_split"] for n in g})
        out.append({"kind": "leakage", "classes": classes,
                    "message": f"{len(duplicates['cross_split'])} duplicate group(s) span two splits "
                               f"({', '.join(f'{k}: {v}' for k, v in spans.most_common())}), "
                               f"e.g. {_examples(duplicates['cross_split'])}: test metrics will be optimistic"})
    return out


def _examples(groups: list[list[str]]) -> str:
    return "; ".join(" = ".join(g[:3]) + (" ..." if len(g) > 3 else "") for g in groups[:EXAMPLES])
