"""Clinical metrics from real probabilities, in numpy. TF-free.

What a radiologist or an AI committee reads, per class one-vs-rest (the class is the finding, every
other class is "not this finding"):
  sensitivity = TP / (TP + FN)      specificity = TN / (TN + FP)
  PPV = TP / (TP + FP)              NPV = TN / (TN + FN)
  F1, ROC AUC (Mann-Whitney, ties count one half, as scikit-learn's roc_auc_score),
  sens_at_spec95: the highest sensitivity of any threshold on the class probability whose specificity
  is >= 0.95 (the operating point a screening tool is often set to), and that threshold.
TP/FN/... come from the top-1 decision (argmax), so sensitivity equals the class's recall in
metrics.json. A class absent from the data has null sensitivity, NPV's complement, F1, AUC and
sens_at_spec95 (nothing to detect); a class never predicted has null PPV.

Over the whole set: macro AUC (mean over classes with a defined AUC), Brier score (Brier 1950: mean over
images of sum_k (p_k - y_k)^2, 0 = perfect, 2 = worst), expected calibration error (ECE: 15 equal-width
bins on the top-1 probability, sum of |accuracy - confidence| weighted by the bin's share; bins are
(0, 1/15], (1/15, 2/15], ...) and the reliability table behind it.

Confidence intervals: a seeded percentile bootstrap over images (`Resampler`), vectorised: one (B, N)
index matrix drawn once and reused by every model of a bench, so model-vs-model differences are paired.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cxredge.edge.evaluate.metrics import confusion_matrix

ECE_BINS = 15
SPEC_TARGET = 0.95
DEFAULT_RESAMPLES = 2000


# ----------------------------------------------------------------------------- point estimates
def _div(num, den):
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.full(np.broadcast(num, den).shape, np.nan), where=den > 0)


def roc_auc(positive: np.ndarray, score: np.ndarray) -> float | None:
    """Area under the ROC curve of `score` for the boolean `positive`; None when one group is empty."""
    positive = np.asarray(positive, dtype=bool)
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = _average_ranks(np.asarray(score, dtype=np.float64))
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks, ties given their average rank."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    starts = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]])
    ends = np.r_[starts[1:], len(xs)]
    avg = (starts + ends + 1) / 2.0  # mean of ranks starts+1 .. ends
    ranks = np.empty(len(x))
    ranks[order] = np.repeat(avg, ends - starts)
    return ranks


def sens_at_spec(positive: np.ndarray, score: np.ndarray, target: float = SPEC_TARGET) -> tuple[float | None,
                                                                                                float | None]:
    """(sensitivity, threshold): the best sensitivity of the rule `score >= threshold` with specificity >= target.

    Thresholds tried: every distinct score and +inf (nothing positive). None when a group is empty.
    """
    positive = np.asarray(positive, dtype=bool)
    score = np.asarray(score, dtype=np.float64)
    pos, neg = score[positive], score[~positive]
    if len(pos) == 0 or len(neg) == 0:
        return None, None
    thresholds = np.r_[np.unique(score), np.inf]
    spec = np.searchsorted(np.sort(neg), thresholds, side="left") / len(neg)  # share of negatives below t
    ok = spec >= target - 1e-12
    t = thresholds[np.argmax(ok)]  # spec rises with t: the first ok threshold is the lowest one
    sens = float((pos >= t).mean())
    return sens, (None if math.isinf(t) else float(t))


def brier(y: np.ndarray, prob: np.ndarray) -> float:
    onehot = np.eye(prob.shape[1])[np.asarray(y, dtype=np.int64)]
    return float(((np.asarray(prob, dtype=np.float64) - onehot) ** 2).sum(axis=1).mean())


def reliability(y: np.ndarray, prob: np.ndarray, bins: int = ECE_BINS) -> dict:
    """ECE and the reliability table: per bin of top-1 probability, its count, mean confidence, accuracy."""
    prob = np.asarray(prob, dtype=np.float64)
    conf = prob.max(axis=1)
    correct = (prob.argmax(axis=1) == np.asarray(y)).astype(np.float64)
    idx = np.clip(np.ceil(conf * bins).astype(np.int64) - 1, 0, bins - 1)
    count = np.bincount(idx, minlength=bins)
    conf_mean = _div(np.bincount(idx, conf, minlength=bins), count)
    acc = _div(np.bincount(idx, correct, minlength=bins), count)
    gap = np.where(count > 0, np.abs(acc - conf_mean), 0.0)
    ece = float((gap * count).sum() / len(conf))
    return {"ece": ece, "bins": bins,
            "table": {"count": count.tolist(), "confidence": _nulls(conf_mean), "accuracy": _nulls(acc)}}


def rates(cm: np.ndarray) -> dict[str, np.ndarray]:
    """One-vs-rest rates per class from confusion matrices (..., K, K), rows = true class. NaN where undefined."""
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diagonal(cm, axis1=-2, axis2=-1)
    support = cm.sum(axis=-1)
    predicted = cm.sum(axis=-2)
    total = support.sum(axis=-1, keepdims=True)
    fn, fp = support - tp, predicted - tp
    tn = total - tp - fn - fp
    sens, spec = _div(tp, tp + fn), _div(tn, tn + fp)
    ppv, npv = _div(tp, tp + fp), _div(tn, tn + fn)
    f1 = _div(2 * tp, 2 * tp + fp + fn)
    f1 = np.where(support > 0, np.nan_to_num(f1, nan=0.0), np.nan)  # present but never right: F1 = 0
    return {"sensitivity": sens, "specificity": spec, "ppv": ppv, "npv": npv, "f1": f1, "support": support}


def clinical_metrics(y: np.ndarray, prob: np.ndarray, classes: list[str]) -> dict:
    """Point estimates: per_class {class: {sensitivity, specificity, ppv, npv, f1, auc, sens_at_spec95,
    threshold_at_spec95, support}}, macro_auc, brier, ece, reliability."""
    y = np.asarray(y, dtype=np.int64)
    prob = np.asarray(prob, dtype=np.float64)
    k = len(classes)
    if prob.ndim != 2 or prob.shape != (len(y), k) or len(y) == 0:
        raise ValueError(f"probabilities {prob.shape} must be (N={len(y)}, C={k}), N > 0")
    r = rates(confusion_matrix(y, prob.argmax(axis=1), k))
    per_class = {}
    aucs = []
    for i, c in enumerate(classes):
        pos = y == i
        auc = roc_auc(pos, prob[:, i])
        s95, t95 = sens_at_spec(pos, prob[:, i])
        if auc is not None:
            aucs.append(auc)
        per_class[c] = {**{m: _num(r[m][i]) for m in ("sensitivity", "specificity", "ppv", "npv", "f1")},
                        "auc": auc, "sens_at_spec95": s95, "threshold_at_spec95": t95, "support": int(r["support"][i])}
    rel = reliability(y, prob)
    return {"per_class": per_class, "macro_auc": float(np.mean(aucs)) if aucs else None,
            "brier": brier(y, prob), "ece": rel["ece"], "reliability": rel}


# ----------------------------------------------------------------------------- bootstrap
@dataclass
class Resampler:
    """B bootstrap resamples of N images, seeded and shared by every model of a bench.

    The (B, N) draw is never held whole: each method regenerates it in blocks of resamples from the
    same seed (consecutive draws of one generator give the same numbers as one big draw), so memory
    is about `BLOCK_VALUES` values per array whatever N is, and the results are those of the one draw.
    """
    n: int
    resamples: int = DEFAULT_RESAMPLES
    seed: int = 0
    block_values: int = 2_000_000  # values per (block, N) array: ~16 MB as int64

    def _blocks(self):
        """(rows, idx): consecutive blocks of the (B, N) draw, idx of shape (rows, N)."""
        rng = np.random.default_rng(self.seed)
        step = max(1, self.block_values // max(self.n, 1))
        for start in range(0, self.resamples, step):
            rows = min(step, self.resamples - start)
            yield rows, rng.integers(0, self.n, size=(rows, self.n), dtype=np.int64)

    def mean(self, values: np.ndarray) -> np.ndarray:
        """(B,) resampled means of a per-image quantity."""
        values = np.asarray(values, dtype=np.float64)
        return np.concatenate([values[idx].mean(axis=1) for _, idx in self._blocks()] or [np.empty(0)])

    def confusions(self, y: np.ndarray, pred: np.ndarray, k: int) -> np.ndarray:
        """(B, K, K) confusion matrices of every resample."""
        pair = np.asarray(y, dtype=np.int64) * k + np.asarray(pred, dtype=np.int64)
        out = []
        for rows, idx in self._blocks():
            flat = (np.arange(rows, dtype=np.int64)[:, None] * (k * k) + pair[idx]).ravel()
            out.append(np.bincount(flat, minlength=rows * k * k).reshape(rows, k, k))
        return np.concatenate(out) if out else np.zeros((0, k, k), np.int64)

    def aucs(self, positive: np.ndarray, score: np.ndarray) -> np.ndarray:
        """(B,) ROC AUC of every resample (NaN where a resample lacks positives or negatives)."""
        positive = np.asarray(positive, dtype=bool)
        score = np.asarray(score, dtype=np.float64)
        order = np.argsort(score, kind="mergesort")
        rank = np.empty(self.n, dtype=np.int64)
        rank[order] = np.arange(self.n)
        s = score[order]
        starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
        pos_sorted = positive[order]
        out = []
        for rows, idx in self._blocks():
            # how often each image is drawn in each resample, in score order
            flat = (np.arange(rows, dtype=np.int64)[:, None] * self.n + rank[idx]).ravel()
            w = np.bincount(flat, minlength=rows * self.n).reshape(rows, self.n).astype(np.float64)
            pos_w = np.add.reduceat(np.where(pos_sorted, w, 0.0), starts, axis=1)
            w[:, pos_sorted] = 0.0
            neg_w = np.add.reduceat(w, starts, axis=1)
            del w
            below = np.cumsum(neg_w, axis=1) - neg_w
            num = (pos_w * (below + 0.5 * neg_w)).sum(axis=1)
            out.append(_div(num, pos_w.sum(axis=1) * neg_w.sum(axis=1)))
        return np.concatenate(out) if out else np.empty(0)


def interval(samples: np.ndarray) -> list[float] | None:
    """The 95% percentile interval of bootstrap samples, ignoring undefined (NaN) resamples."""
    samples = np.asarray(samples, dtype=np.float64)
    samples = samples[~np.isnan(samples)]
    if samples.size == 0:
        return None
    lo, hi = np.percentile(samples, [2.5, 97.5])
    return [float(lo), float(hi)]


def bootstrap_ci(y: np.ndarray, prob: np.ndarray, classes: list[str], rs: Resampler) -> dict:
    """ci95 {accuracy, macro_f1, macro_auc: [lo, hi], sensitivity / specificity: {class: [lo, hi]}}."""
    y = np.asarray(y, dtype=np.int64)
    pred = np.asarray(prob).argmax(axis=1)
    k = len(classes)
    present = np.bincount(y, minlength=k) > 0
    r = rates(rs.confusions(y, pred, k))
    macro_f1 = _row_nanmean(np.where(present, r["f1"], np.nan))
    aucs = np.stack([rs.aucs(y == i, prob[:, i]) if present[i] else np.full(rs.resamples, np.nan)
                     for i in range(k)], axis=1)
    macro_auc = _row_nanmean(aucs)
    return {"method": f"percentile bootstrap over images, {rs.resamples} resamples, seed {rs.seed}",
            "accuracy": interval(rs.mean(pred == y)), "macro_f1": interval(macro_f1),
            "macro_auc": interval(macro_auc),
            "sensitivity": {c: interval(r["sensitivity"][:, i]) for i, c in enumerate(classes)},
            "specificity": {c: interval(r["specificity"][:, i]) for i, c in enumerate(classes)}}


# ----------------------------------------------------------------------------- paired comparison
def mcnemar_exact(a_correct: np.ndarray, b_correct: np.ndarray) -> dict:
    """Exact (binomial) two-sided McNemar test on paired per-image correctness."""
    a, b = np.asarray(a_correct, dtype=bool), np.asarray(b_correct, dtype=bool)
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    n = only_a + only_b
    tail = sum(math.comb(n, i) for i in range(min(only_a, only_b) + 1))
    p = 1.0 if n == 0 else min(1.0, 2 * tail / 2 ** n)
    return {"p": p, "only_reference_correct": only_a, "only_model_correct": only_b}


def paired_vs_reference(y: np.ndarray, pred: np.ndarray, ref_pred: np.ndarray, reference: str,
                        rs: Resampler | None) -> dict:
    """accuracy(model) - accuracy(reference) on the same images, its paired bootstrap CI, and McNemar's p."""
    y = np.asarray(y)
    mine, ref = np.asarray(pred) == y, np.asarray(ref_pred) == y
    test = mcnemar_exact(ref, mine)
    diff = mine.astype(np.float64) - ref.astype(np.float64)
    return {"reference": reference, "mcnemar_p": test["p"], "accuracy_diff": float(diff.mean()),
            "accuracy_diff_ci95": interval(rs.mean(diff)) if rs is not None and rs.resamples else None,
            "only_float_correct": test["only_reference_correct"], "only_model_correct": test["only_model_correct"]}


def _row_nanmean(a: np.ndarray) -> np.ndarray:
    """Mean of each row over its defined (non-NaN) entries; NaN for a row with none (no warning)."""
    defined = ~np.isnan(a)
    n = defined.sum(axis=1)
    return _div(np.where(defined, a, 0.0).sum(axis=1), n)


def _num(v) -> float | None:
    v = float(v)
    return None if math.isnan(v) else v


def _nulls(a: np.ndarray) -> list:
    return [_num(v) for v in a]
