"""What the report reads, checked before use: bench.json, explain.json, audit.json shapes, and which
files may be embedded into report.html. TF-free (issue 22 causes 4 and 12).

A document is checked against a small schema of the keys the report reads: a wrong type or a missing
required key is one CxrError naming the file and the key path (`results[3].latency_ms.median: expected a
number, got str`). Unknown keys are allowed (the formats only gain keys). Embedding: only regular files
inside the run folder (resolved, so no `..` or symlink leads out) are read into the page.
"""
from __future__ import annotations

from pathlib import Path

from cxredge.errors import CxrError
from cxredge.formats import AUDIT_JSON, BENCH_JSON, EXPLAIN_JSON


class Opt:
    """None, or a value of `spec`."""

    def __init__(self, spec):
        self.spec = spec


class ListOf:
    def __init__(self, spec, length: int | None = None):
        self.spec, self.length = spec, length


class DictOf:
    """A dict with string keys whose every value is of `spec`."""

    def __init__(self, spec):
        self.spec = spec


class AnyOf:
    def __init__(self, *specs):
        self.specs = specs


NUM, INT, STR, BOOL, ANY = "number", "integer", "string", "boolean", "any"
NAMES = {NUM: "a number", INT: "an integer", STR: "a string", BOOL: "true or false", dict: "an object",
         list: "a list"}


def _type_name(value) -> str:
    return {type(None): "null", bool: "boolean", int: "integer", float: "number", str: "string",
            list: "list", dict: "object"}.get(type(value), type(value).__name__)


def _is(value, kind: str) -> bool:
    if kind == NUM:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == INT:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, {STR: str, BOOL: bool}[kind])


def _describe(spec) -> str:
    if isinstance(spec, str):
        return NAMES[spec]
    if isinstance(spec, dict):
        return "an object"
    if isinstance(spec, (ListOf,)):
        return "a list" if spec.length is None else f"a list of {spec.length}"
    if isinstance(spec, DictOf):
        return "an object"
    if isinstance(spec, Opt):
        return _describe(spec.spec) + " or null"
    if isinstance(spec, AnyOf):
        return " or ".join(_describe(s) for s in spec.specs)
    return "?"


def problem(value, spec, where: str) -> str | None:
    """The first place where `value` does not fit `spec`, as 'key.path: expected X, got Y', else None."""
    if isinstance(spec, Opt):
        return None if value is None else problem(value, spec.spec, where)
    if isinstance(spec, AnyOf):
        if any(problem(value, s, where) is None for s in spec.specs):
            return None
        return f"{where or 'document'}: expected {_describe(spec)}, got {_type_name(value)}"
    if spec == ANY:
        return None
    if isinstance(spec, str):
        return None if _is(value, spec) else f"{where or 'document'}: expected {NAMES[spec]}, got {_type_name(value)}"
    if isinstance(spec, ListOf):
        if not isinstance(value, list) or (spec.length is not None and len(value) != spec.length):
            return f"{where or 'document'}: expected {_describe(spec)}, got {_type_name(value)}"
        for i, v in enumerate(value):
            if (p := problem(v, spec.spec, f"{where}[{i}]")) is not None:
                return p
        return None
    if isinstance(spec, DictOf):
        if not isinstance(value, dict):
            return f"{where or 'document'}: expected an object, got {_type_name(value)}"
        for k, v in value.items():
            if (p := problem(v, spec.spec, f"{where}.{k}" if where else str(k))) is not None:
                return p
        return None
    if not isinstance(value, dict):
        return f"{where or 'document'}: expected an object, got {_type_name(value)}"
    for key, sub in spec.items():
        name = key.rstrip("!")
        path = f"{where}.{name}" if where else name
        if name not in value:
            if key.endswith("!"):
                return f"{path}: missing"
            continue
        if (p := problem(value[name], sub, path)) is not None:
            return p
    return None


ON = Opt(NUM)
CI = Opt(ListOf(NUM, 2))
LATENCY = {k: ON for k in ("init", "first", "median", "p90", "p99", "mean", "std", "min")} | {"runs": Opt(INT)}
ROW = {"model!": STR, "status!": STR, "delegate!": STR, "threads!": Opt(INT),
       "variant": Opt(STR), "precision": Opt(STR), "size_bytes": ON, "accuracy": ON, "macro_f1": ON,
       "agreement_with_float": ON, "latency_ms": Opt(LATENCY), "speedup_vs_float32": ON, "sha256": Opt(STR),
       "error": Opt(STR), "latency_noisy": Opt(BOOL), "peak_rss_mb": ON}
PER_CLASS = DictOf({k: ON for k in ("sensitivity", "specificity", "ppv", "npv", "f1", "auc", "sens_at_spec95",
                                    "precision", "recall")} | {"support": Opt(INT)})
MODEL = {"accuracy": ON, "macro_f1": ON, "macro_auc": ON, "brier": ON, "ece": ON, "agreement_with_float": ON,
         "per_class": Opt(PER_CLASS),
         "ci95": Opt({"accuracy": CI, "macro_f1": CI, "macro_auc": CI, "sensitivity": Opt(DictOf(CI)),
                      "specificity": Opt(DictOf(CI))}),
         "paired_vs_float": Opt({"reference!": STR, "accuracy_diff!": NUM, "accuracy_diff_ci95": CI, "mcnemar_p": ON}),
         "reliability": Opt({"bins!": INT, "ece!": NUM, "table!": {"accuracy!": ListOf(ON), "confidence!": ListOf(ON),
                                                                   "count!": ListOf(INT)}}),
         "roc": Opt(DictOf(Opt({"fpr!": ListOf(NUM), "tpr!": ListOf(NUM)}))),
         "confusion_matrix": Opt(ListOf(ListOf(INT))), "predicted": Opt(STR)}
DEVICE = {k: Opt(AnyOf(STR, NUM)) for k in ("hostname", "cpu_model", "machine", "os", "python", "runtime",
                                              "runtime_version", "cxredge", "note", "cores")}
DEVICE |= {"temperature_c": Opt(DictOf(NUM)), "cpu_mhz": Opt(DictOf(ON)), "cpu_governor": Opt(STR),
           "throttled": Opt({"raw": AnyOf(STR, NUM), "flags": ListOf(STR)})}
DATASET = {"name": Opt(STR), "path": Opt(STR), "split": Opt(STR), "n": Opt(INT), "classes": Opt(ListOf(STR)),
           "source": Opt(STR), "images_sha256": Opt(STR), "image_ids": Opt(STR), "internal": Opt(BOOL)}
BENCH = {"device!": DEVICE, "results!": ListOf(ROW), "models": DictOf(MODEL), "dataset": DATASET,
         "settings": Opt(dict), "plots": Opt(ListOf(STR)), "notes": Opt(ListOf(STR)), "origin": Opt(STR),
         "remote": Opt(dict), "clinical": Opt(dict), "ood": Opt(dict), "machine_load": Opt(dict)}

GROUP = DictOf(AnyOf(INT, {k: ON for k in ("accuracy", "border_share_mean", "pearson_mean", "spearman_mean",
                                          "same_class")}))
EXPLAIN = {"models!": ListOf({"key!": STR, "path!": AnyOf(STR, NUM), "method!": AnyOf(STR, NUM)}),
           "summary!": {"per_class!": DictOf(GROUP), "all!": GROUP, "grouped_by!": AnyOf(STR, NUM)},
           "regions!": {"definition!": STR, "border_area_share!": NUM},
           "settings!": {k + "!": AnyOf(STR, NUM) for k in ("patch", "fill", "stride", "target")},
           "images!": list, "grid": STR}
PAIR = {"classes!": ListOf(STR), "n!": INT, "chance!": ON, "accuracy_by_cue!": DictOf(ON), "cue!": STR,
        "flagged!": BOOL}
AUDIT = {"source": Opt(AnyOf(STR, NUM)),
         "duplicates": Opt({k: Opt(list) for k in ("exact", "near", "cross_class", "cross_split")}),
         "warnings": Opt(ListOf({"kind!": STR, "message!": STR})),
         "probe": Opt(AnyOf({"skipped!": AnyOf(STR, BOOL)},
                            {"settings!": {k + "!": NUM for k in ("l2", "seed", "min_lift", "z_min")},
                             "cv_folds!": INT, "n!": INT, "features!": DictOf({"n!": INT}), "accuracy!": ON,
                             "chance!": ON, "pairs!": ListOf(PAIR)}))}


def check(path: Path | str, doc, spec, what: str) -> dict:
    """`doc` if it fits `spec`, else CxrError('<path>: not a usable <what>: <key>: expected ..., got ...')."""
    p = problem(doc, _plain(spec), "")
    if p is not None:
        raise CxrError(f"{path}: not a usable {what} ({p})")
    return doc


def _plain(spec):
    """`list` / `dict` in a schema: any list / any object."""
    if spec is list:
        return ListOf(ANY)
    if spec is dict:
        return DictOf(ANY)
    if isinstance(spec, dict):
        return {k: _plain(v) for k, v in spec.items()}
    if isinstance(spec, Opt):
        return Opt(_plain(spec.spec))
    if isinstance(spec, ListOf):
        return ListOf(_plain(spec.spec), spec.length)
    if isinstance(spec, DictOf):
        return DictOf(_plain(spec.spec))
    if isinstance(spec, AnyOf):
        return AnyOf(*(_plain(s) for s in spec.specs))
    return spec


def check_bench(path, doc) -> dict:
    return check(path, doc, BENCH, BENCH_JSON)


def check_explain(path, doc) -> dict:
    return check(path, doc, EXPLAIN, EXPLAIN_JSON)


def check_audit(path, doc) -> dict:
    check(path, doc, AUDIT, AUDIT_JSON)
    probe = doc.get("probe")
    if isinstance(probe, dict) and not probe.get("skipped"):  # the probe table reads one column per cue group
        from cxredge.edge.audit.features import GROUPS

        for g in GROUPS:
            if g not in probe["features"]:
                raise CxrError(f"{path}: not a usable audit.json (probe.features.{g}: missing)")
            for i, p in enumerate(probe["pairs"]):
                for k in (g, "all"):
                    if k not in p["accuracy_by_cue"]:
                        where = f"probe.pairs[{i}].accuracy_by_cue.{k}"
                        raise CxrError(f"{path}: not a usable audit.json ({where}: missing)")
    return doc
