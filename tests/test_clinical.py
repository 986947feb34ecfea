"""cxredge.edge.evaluate.clinical cross-checked against scikit-learn (and hand-computed cases) to 1e-9."""
from __future__ import annotations

import math

import numpy as np
import pytest

sk = pytest.importorskip("sklearn.metrics")

from cxredge.edge.evaluate import clinical as C  # noqa: E402

CLASSES = ["a", "b", "c", "d"]


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def random_case(seed, n=300, k=4, skill=1.5, ties=False):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), y] += skill
    p = softmax(logits)
    if ties:
        p = np.round(p, 1) + 1e-12 * np.arange(k)  # many equal scores within a class column
        p = p / p.sum(axis=1, keepdims=True)
    return y, p


def sk_onevsrest(y, p, k):
    pred = p.argmax(1)
    out = []
    for i in range(k):
        tn, fp, fn, tp = sk.confusion_matrix(y == i, pred == i, labels=[False, True]).ravel()
        out.append({"sensitivity": tp / (tp + fn) if tp + fn else None,
                    "specificity": tn / (tn + fp) if tn + fp else None,
                    "ppv": tp / (tp + fp) if tp + fp else None, "npv": tn / (tn + fn) if tn + fn else None})
    return out


def sk_sens_at_spec(pos, score, target=0.95):
    fpr, tpr, _ = sk.roc_curve(pos, score, drop_intermediate=False)
    return float(tpr[fpr <= 1 - target + 1e-12].max())


def check_against_sklearn(y, p, classes=CLASSES):
    k = len(classes)
    m = C.clinical_metrics(y, p, classes)
    ref = sk_onevsrest(y, p, k)
    aucs = []
    for i, c in enumerate(classes):
        got = m["per_class"][c]
        for key in ("sensitivity", "specificity", "ppv", "npv"):
            if ref[i][key] is None:
                assert got[key] is None, (c, key)
            else:
                assert got[key] == pytest.approx(ref[i][key], abs=1e-9), (c, key)
        pos = y == i
        if pos.any() and (~pos).any():
            auc = sk.roc_auc_score(pos, p[:, i])
            aucs.append(auc)
            assert got["auc"] == pytest.approx(auc, abs=1e-9)
            assert got["sens_at_spec95"] == pytest.approx(sk_sens_at_spec(pos, p[:, i]), abs=1e-9)
            f1 = sk.f1_score(pos, p.argmax(1) == i, zero_division=0)
            assert got["f1"] == pytest.approx(f1, abs=1e-9)
        else:
            assert got["auc"] is None and got["sens_at_spec95"] is None
        assert got["support"] == int(pos.sum())
    if aucs:
        assert m["macro_auc"] == pytest.approx(np.mean(aucs), abs=1e-9)
    brier_sk = sum(sk.brier_score_loss(y == i, p[:, i]) for i in range(k))
    assert m["brier"] == pytest.approx(brier_sk, abs=1e-9)
    return m


@pytest.mark.parametrize("seed", range(5))
def test_random_inputs_match_sklearn(seed):
    y, p = random_case(seed, ties=seed % 2 == 1)
    m = check_against_sklearn(y, p)
    if len(np.unique(y)) == 4:
        assert m["macro_auc"] == pytest.approx(sk.roc_auc_score(y, p, multi_class="ovr", average="macro"), abs=1e-9)


def test_class_never_predicted_and_class_absent():
    y, p = random_case(7)
    p[:, 3] = 0.0  # class d is never predicted: PPV undefined, sensitivity 0
    p = p / p.sum(1, keepdims=True)
    m = check_against_sklearn(y, p)
    assert m["per_class"]["d"]["ppv"] is None and m["per_class"]["d"]["sensitivity"] == 0.0
    keep = y != 2  # class c absent: nothing to detect
    m = check_against_sklearn(y[keep], p[keep])
    assert m["per_class"]["c"]["sensitivity"] is None and m["per_class"]["c"]["auc"] is None
    assert m["per_class"]["c"]["f1"] is None and m["per_class"]["c"]["specificity"] is not None


def test_perfect_and_inverted_scores():
    y = np.repeat(np.arange(4), 25)
    perfect = np.eye(4)[y] * 0.9 + 0.025
    m = check_against_sklearn(y, perfect)
    assert m["macro_auc"] == 1.0 and all(v["sens_at_spec95"] == 1.0 for v in m["per_class"].values())
    inverted = (1 - np.eye(4)[y]) / 3
    m = check_against_sklearn(y, inverted)
    assert m["macro_auc"] == 0.0
    assert all(v["sensitivity"] == 0.0 and v["sens_at_spec95"] == 0.0 for v in m["per_class"].values())


def test_ece_hand_computed():
    # 4 images: confidences 0.95, 0.95 (bin 15; one right) and 0.5, 0.5 (bin 8; both right)
    p = np.array([[0.95, 0.05], [0.95, 0.05], [0.5 + 1e-9, 0.5 - 1e-9], [0.5 - 1e-9, 0.5 + 1e-9]])
    y = np.array([0, 1, 0, 1])
    rel = C.reliability(y, p)
    expected = 0.5 * abs(0.5 - 0.95) + 0.5 * abs(1.0 - 0.5)
    assert rel["ece"] == pytest.approx(expected, abs=1e-9)
    assert rel["table"]["count"][14] == 2 and rel["table"]["count"][7] == 2 and sum(rel["table"]["count"]) == 4
    assert rel["table"]["accuracy"][0] is None  # empty bins have no accuracy
    # perfectly calibrated one-hot predictions: ECE 0
    assert C.reliability(np.array([0, 1]), np.array([[1.0, 0.0], [0.0, 1.0]]))["ece"] == 0.0


def test_mcnemar_hand_computed():
    # reference right / model wrong on 5 images, the reverse on 1: p = 2 * P(X <= 1), X ~ Bin(6, 1/2) = 14/64
    ref = np.array([1] * 5 + [0] + [1] * 10, dtype=bool)
    mine = np.array([0] * 5 + [1] + [1] * 10, dtype=bool)
    t = C.mcnemar_exact(ref, mine)
    assert t["p"] == pytest.approx(14 / 64, abs=1e-12)
    assert (t["only_reference_correct"], t["only_model_correct"]) == (5, 1)
    assert C.mcnemar_exact(ref, ref)["p"] == 1.0  # no discordant pairs
    assert C.mcnemar_exact(np.ones(3, bool), np.ones(3, bool))["p"] == 1.0
    # a symmetric split of discordant pairs is p = 1 (capped), 0 vs 10 is 2 / 2**10
    assert C.mcnemar_exact(np.array([1, 0] * 5, bool), np.array([0, 1] * 5, bool))["p"] == 1.0
    assert C.mcnemar_exact(np.ones(10, bool), np.zeros(10, bool))["p"] == pytest.approx(2 / 1024, abs=1e-15)
    # large n stays exact (no float overflow): 300 vs 330 discordant
    a = np.r_[np.ones(300), np.zeros(330)].astype(bool)
    assert 0 < C.mcnemar_exact(a, ~a)["p"] < 1


def test_bootstrap_matches_a_plain_loop():
    y, p = random_case(3, n=120)
    rs = C.Resampler(len(y), resamples=50, seed=1)
    ci = C.bootstrap_ci(y, p, CLASSES, rs)
    pred = p.argmax(1)
    accs, f1s, aucs, sens = [], [], [], []
    for idx in np.random.default_rng(1).integers(0, len(y), size=(50, len(y))):  # the one seeded draw
        yy, pp = y[idx], p[idx]
        accs.append((pred[idx] == yy).mean())
        f1s.append(sk.f1_score(yy, pp.argmax(1), labels=[0, 1, 2, 3], average="macro", zero_division=0))
        aucs.append(np.mean([sk.roc_auc_score(yy == i, pp[:, i]) for i in range(4)]))
        sens.append(sk.recall_score(yy == 1, pp.argmax(1) == 1))
    for key, vals in (("accuracy", accs), ("macro_f1", f1s), ("macro_auc", aucs)):
        assert ci[key] == pytest.approx(list(np.percentile(vals, [2.5, 97.5])), abs=1e-9), key
    assert ci["sensitivity"]["b"] == pytest.approx(list(np.percentile(sens, [2.5, 97.5])), abs=1e-9)
    # seeded: the same resamples again
    assert C.bootstrap_ci(y, p, CLASSES, C.Resampler(len(y), 50, 1)) == ci


def test_bootstrap_in_small_blocks_is_the_same_draw_and_bounded_in_memory():
    import tracemalloc

    y, p = random_case(5, n=10_000)
    p[:50] = p[50]  # ties in the scores
    whole = C.bootstrap_ci(y, p, CLASSES, C.Resampler(len(y), 300, seed=2))
    tracemalloc.start()
    blocks = C.bootstrap_ci(y, p, CLASSES, C.Resampler(len(y), 300, seed=2, block_values=50_000))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert blocks == whole
    # one (300, 10k) float64 array alone is 24 MB: blocks of 5 resamples keep the peak far below it
    assert peak < 8e6, peak


def test_paired_difference_and_ci():
    y, p = random_case(4, n=200)
    pred = p.argmax(1)
    other = pred.copy()
    other[:20] = (other[:20] + 1) % 4
    rs = C.Resampler(len(y), 200, seed=0)
    d = C.paired_vs_reference(y, other, pred, "x/float32", rs)
    assert d["accuracy_diff"] == pytest.approx((other == y).mean() - (pred == y).mean(), abs=1e-12)
    lo, hi = d["accuracy_diff_ci95"]
    assert lo <= d["accuracy_diff"] <= hi
    same = C.paired_vs_reference(y, pred, pred, "x/float32", rs)
    assert same["accuracy_diff_ci95"] == [0.0, 0.0] and same["mcnemar_p"] == 1.0


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError):
        C.clinical_metrics(np.array([0, 1]), np.ones((3, 4)) / 4, CLASSES)
    with pytest.raises(ValueError):
        C.clinical_metrics(np.array([], dtype=int), np.ones((0, 4)), CLASSES)


def test_sens_at_spec_threshold_is_returned():
    pos = np.array([1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], bool)
    score = np.r_[0.9, 0.8, 0.1, np.linspace(0.0, 0.85, 18)]
    sens, thr = C.sens_at_spec(pos, score)
    assert sens == pytest.approx(sk_sens_at_spec(pos, score), abs=1e-12)
    assert thr is not None and ((score[~pos] < thr).mean()) >= 0.95
    assert math.isclose(sens, (score[pos] >= thr).mean())


def test_console_clinical_table_fits_80_columns_with_every_name_and_interval_whole():
    from rich.console import Console

    from cxredge.edge.render.clinical_tables import rich_table

    def model(ref: str, diff: float):
        return {"accuracy": 0.8625, "macro_auc": 0.9512, "ece": 0.0412, "brier": 0.2,
                "ci95": {"accuracy": [0.7875, 0.9250], "macro_auc": [0.9104, 0.9833]},
                "paired_vs_float": {"reference": ref, "accuracy_diff": diff, "accuracy_diff_ci95": [-0.0625, 0.0125],
                                    "mcnemar_p": 0.5}}

    keys = ["ensemble/float32", "ensemble/int8_fallback", "two_conv/qat_int8"]
    doc = {"dataset": {"name": "sample", "n": 80}, "clinical": {"resamples": 2000},
           "models": {k: model(keys[0] if k != keys[0] else k, -0.025) for k in keys}}
    console = Console(width=80, record=True, color_system=None)
    console.print(rich_table(doc))
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80, text
    for piece in [*keys, "0.787-0.925", "0.910-0.983", "-6.2 to +1.2", "-2.5 pt", "reference"]:
        assert piece in text, (piece, text)
