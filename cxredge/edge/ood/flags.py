"""The OOD guard at use time: a model's reference from its sidecar, predict's marks, bench's count. TF-free.

A sidecar without an `ood` key (quantized by an older cxredge, or a bare .tflite with --labels) means
"no guard": said once, never an error. bench.json gains a top-level `ood` block:
  n, guarded [model keys], unguarded [model keys], n_flagged, share, threshold (null when the models carry
  different references), reasons {reason: images}, flagged [{image, score, reasons}] (at most
  MAX_LISTED), per_model {key: {n_flagged, share, threshold, reasons}}, unguarded_why {key: why}.
An image counts once in the top-level figures when any guarded model's reference flags it.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np

from cxredge.edge.formats.sidecar import read_sidecar
from cxredge.edge.ood.guard import Reference, reference_from_dict, statistics
from cxredge.errors import CxrError

MAX_LISTED = 50
YELLOW = "yellow"


def reference_of(sidecar: dict | None, image_size: int | None = None) -> tuple[Reference | None, str | None]:
    """(Reference, None) or (None, why this model has no guard)."""
    if sidecar is None:
        return None, "no sidecar, so no `ood` reference"
    ref, why = reference_from_dict(sidecar.get("ood"))
    if ref is not None and image_size is not None and ref.input_size != image_size:
        return None, f"`ood` reference made at {ref.input_size} px, the model takes {image_size} px"
    return ref, why


class Guard:
    """predict's guard for one model: marks each result dict, counts the flagged ones."""

    def __init__(self, sidecar: dict | None, model_name: str, image_size: int | None = None):
        self.ref, self.why = reference_of(sidecar, image_size)
        self.model_name = model_name
        self.flagged: list[dict] = []

    @classmethod
    def for_model(cls, model_path: Path, model_name: str, image_size: int | None = None) -> "Guard":
        """The guard of a .tflite from its sidecar; an unreadable sidecar (labels came from --labels) is no guard."""
        try:
            return cls(read_sidecar(model_path), model_name, image_size)
        except CxrError as exc:
            guard = cls(None, model_name, image_size)
            guard.why = f"sidecar unreadable ({exc})"
            return guard

    def mark(self, result: dict, image: np.ndarray) -> None:
        if self.ref is None:
            result.update(in_distribution=None, ood=None)
            return
        verdict = self.ref.check(image)[0]
        result.update(in_distribution=verdict.in_distribution, ood=verdict.to_dict())
        if not verdict.in_distribution:
            self.flagged.append(result)

    def describe(self) -> dict:
        if self.ref is None:
            return {"active": False, "why": self.why}
        return {"active": True, "split": self.ref.split, "n": self.ref.n, "keep": self.ref.keep,
                "threshold": round(self.ref.threshold, 2)}

    def lines(self, n_images: int) -> list[str]:
        """Warnings for the console (rich markup): never silent about flags or a missing guard."""
        if self.ref is None:
            return [f"[{YELLOW}]no OOD guard for {self.model_name}: {self.why}; inputs are not checked "
                    f"against what the model was validated on (re-run `cxredge quantize` to add one)[/]"]
        if not self.flagged:
            return []
        head = (f"[{YELLOW}]warning: {len(self.flagged)} of {n_images} images look unlike the model's "
                f"{self.ref.split} images; their predictions are not to be trusted:[/]")
        return [head] + [f"[{YELLOW}]  {Path(r['image']).name}: {'; '.join(r['ood']['reasons'])} "
                         f"(score {r['ood']['score']:.1f} > {r['ood']['threshold']:.1f})[/]" for r in self.flagged]


def _summary(flagged: list, n: int, threshold: float | None) -> dict:
    """flagged: per image, the Verdict that flagged it or None."""
    hits = [v for v in flagged if v is not None]
    reasons = Counter(v.reasons[0] for v in hits)
    return {"n_flagged": len(hits), "share": round(len(hits) / n, 4) if n else None,
            "threshold": None if threshold is None else round(threshold, 4), "reasons": dict(reasons.most_common())}


def _references(entries, image_size: int) -> tuple[dict[str, Reference], dict[str, str], dict[str, str]]:
    """Distinct references (by content), model key -> its reference, model key -> why it has none."""
    refs, key_of, why = {}, {}, {}
    for e in entries:
        ref, reason = reference_of(e.sidecar, image_size)
        if ref is None:
            why[e.key] = reason
            continue
        fp = json.dumps(ref.to_dict(), sort_keys=True)
        refs.setdefault(fp, ref)
        key_of[e.key] = fp
    return refs, key_of, why


def bench_block(entries, images, paths: list[Path], root: Path | None = None) -> dict:
    """The `ood` block of bench.json: image statistics computed once (from the images, or the guard's
    Statistics of a streamed pass over them), checked against each distinct reference."""
    measured = statistics(images)
    n = measured.n
    refs, key_of, why = _references(entries, measured.image_size)
    block = {"n": n, "guarded": list(key_of), "unguarded": list(why), "unguarded_why": why}
    if not refs:
        return {**block, **_summary([], n, None), "n_flagged": None, "share": None, "flagged": [], "per_model": {}}
    stats, g = measured.arrays()
    checked = {fp: ref.verdicts(*ref.scores_of(stats, g)) for fp, ref in refs.items()}
    first = [next((v[i] for v in checked.values() if not v[i].in_distribution), None) for i in range(n)]
    block.update(_summary(first, n, next(iter(refs.values())).threshold if len(refs) == 1 else None))
    block["flagged"] = [{"image": _name(paths[i], root), "score": round(v.score, 2), "reasons": list(v.reasons)}
                        for i, v in enumerate(first) if v is not None][:MAX_LISTED]
    block["per_model"] = {k: _summary([v if not v.in_distribution else None for v in checked[fp]], n,
                                      refs[fp].threshold) for k, fp in key_of.items()}
    return block


def _name(path: Path, root: Path | None) -> str:
    try:
        return Path(path).relative_to(root).as_posix() if root else str(path)
    except ValueError:
        return str(path)


def attach(doc: dict, entries, images, paths: list[Path], root: Path | None = None) -> None:
    """bench: put the `ood` block into bench.json and one line into its notes (bench.md shows them)."""
    block = bench_block(entries, images, paths, root)
    doc["ood"] = block
    doc["notes"] = list(doc.get("notes", [])) + [note(block)]


def _flag_text(block: dict) -> str:
    reasons = ", ".join(f"{r} {c}" for r, c in block["reasons"].items())
    return (f"{block['n_flagged']} of {block['n']} images ({100 * block['share']:.1f}%) look unlike the models' "
            f"val images" + (f" ({reasons})" if reasons else ""))


def _unguarded_text(block: dict) -> str:
    return f"no OOD guard for {', '.join(block['unguarded'])}: {next(iter(block['unguarded_why'].values()))}"


def note(block: dict) -> str:
    parts = [f"ood guard: {_flag_text(block)}; listed in bench.json ood.flagged"] if block["guarded"] else []
    return "; ".join(parts + ([_unguarded_text(block)] if block["unguarded"] else []))


def bench_lines(block: dict | None) -> list[str]:
    """bench's console lines (rich markup): yellow when images are flagged or models are unguarded."""
    if not block:
        return []
    lines = []
    if block["guarded"]:
        lines.append(f"[{YELLOW if block['n_flagged'] else 'dim'}]ood guard: {_flag_text(block)}[/]")
    if block["unguarded"]:
        lines.append(f"[{YELLOW}]{_unguarded_text(block)}; their inputs are not checked[/]")
    return lines
