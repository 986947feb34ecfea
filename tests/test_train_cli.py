"""`cxredge train` through the CLI on tiny synthetic data: artifacts, contract numbers, determinism."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from cxredge.cli.main import app
from conftest import make_dataset

pytest.importorskip("cxredge.keras")

runner = CliRunner()
FAST = ["--alpha", "0.25", "--weights", "none", "--epochs", "2", "--patience", "2"]
METRIC_KEYS = {"classes", "accuracy", "macro_precision", "macro_recall", "macro_f1", "weighted_f1", "per_class",
               "confusion_matrix", "params_total", "params_trainable", "train_seconds", "epochs_run", "split",
               "macro_auc", "brier", "ece", "ci95", "reliability", "roc"}


def train(*args):
    result = runner.invoke(app, ["train", *map(str, args)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def read(path):
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def alpha1_run(tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "a1"
    result = train("--data", tiny_data, "--out", out, "--alpha", "1.0", "--weights", "none", "--epochs", "1", "--seed",
                   "3")
    assert result.exit_code == 0, result.output
    return out, result


@pytest.fixture(scope="module")
def fast_runs(tiny_data, tmp_path_factory):
    """The same short run twice with one seed, once with another seed."""
    base = tmp_path_factory.mktemp("runs")
    outs = {}
    for name, seed, variants in (("a", 7, "fc,two_conv"), ("b", 7, "fc,two_conv"), ("c", 8, "fc")):
        extra = ["--no-audit"] if name == "c" else []
        result = train("--data", tiny_data, "--out", base / name, "--variant", variants, "--seed", seed, *FAST, *extra)
        assert result.exit_code == 0, result.output
        outs[name] = base / name
    return outs


def test_alpha1_weights_none_writes_pinned_param_counts(alpha1_run):
    out, result = alpha1_run
    expected = {"fc": 1_551_876, "one_conv": 2_576_876, "two_conv": 3_627_500}
    for variant, trainable in expected.items():
        m = read(out / variant / "metrics.json")
        assert m["params_total"] == 5_805_740
        assert m["params_trainable"] == trainable
    assert "cxredge train: test split" in result.output and "two_conv" in result.output


def test_run_directory_contract(alpha1_run, tiny_data):
    out, _ = alpha1_run
    run = read(out / "run.json")
    assert run["format"] == "cxredge-run/1" and run["variants"] == ["fc", "one_conv", "two_conv"]
    assert run["classes"] == ["alpha", "beta", "delta", "gamma"] and run["alpha"] == 1.0 and run["weights"] == "none"
    assert run["data"]["layout"] == "splits" and run["data"]["path"] == str(tiny_data.resolve())
    assert len(run["data"]["sha256"]) == 64 and run["data"]["counts"]["train"]["alpha"] == 8
    assert run["devices"]["used"] in ("CPU", "GPU") and run["leakage"] == {} and run["skipped_images"] == 0
    assert {"tensorflow", "tf_keras", "cxredge"} <= set(run["versions"])
    audit = read(out / "audit.json")  # the pre-training audit, on the decoded images
    assert audit["source"].startswith("decoded") and len(audit["probe"]["pairs"]) == 6
    assert run["audit"]["file"] == "audit.json" and run["audit"]["warnings"] == len(audit["warnings"])
    for variant in run["variants"]:
        folder = out / variant
        for name in ("model.keras", "history.json", "curves.png", "metrics.json", "confusion.png"):
            assert (folder / name).stat().st_size > 0, name
        m = read(folder / "metrics.json")
        assert METRIC_KEYS <= set(m) and m["split"] == "test" and m["epochs_run"] == 1
        assert sum(map(sum, m["confusion_matrix"])) == 16 == m["n"]
        assert m["full_vs_cached_max_abs_diff"] < 1e-5  # the saved full model predicts what the tail learned
        hist = read(folder / "history.json")
        assert len(hist["loss"]) == len(hist["val_loss"]) == len(hist["val_accuracy"]) == 1
    assert not list(out.rglob(".*tmp*"))  # atomic writes leave no temporaries


def test_saved_model_reloads_and_predicts_like_the_metrics(alpha1_run, tiny_data):
    from cxredge.edge.data.dataset import load_split, scan
    from cxredge.keras import keras
    from cxredge.train.cache import predict

    out, _ = alpha1_run
    model = keras.models.load_model(out / "fc" / "model.keras")
    test = load_split(scan(tiny_data), "test")
    probs = predict(model, test.x)
    pred = probs.argmax(axis=1)
    m = read(out / "fc" / "metrics.json")
    assert (pred == test.y).mean() == pytest.approx(m["accuracy"])
    # the clinical block of metrics.json comes from these probabilities (cross-checked with scikit-learn)
    skm = pytest.importorskip("sklearn.metrics")
    for i, c in enumerate(m["classes"]):
        v = m["per_class"][c]
        assert v["sensitivity"] == pytest.approx(skm.recall_score(test.y == i, pred == i), abs=1e-6)
        assert v["sensitivity"] == pytest.approx(v["recall"], abs=1e-12)
        assert v["auc"] == pytest.approx(skm.roc_auc_score(test.y == i, probs[:, i]), abs=1e-4)
    lo, hi = m["ci95"]["accuracy"]
    assert lo <= m["accuracy"] <= hi


def test_same_seed_same_metrics_and_history(fast_runs):
    assert not (fast_runs["c"] / "audit.json").exists() and read(fast_runs["c"] / "run.json")["audit"] is None
    assert read(fast_runs["a"] / "fc" / "history.json")["loss"] != read(fast_runs["c"] / "fc" / "history.json")["loss"]
    for variant in ("fc", "two_conv"):
        a, b = (read(fast_runs[k] / variant / "history.json") for k in "ab")
        assert a["loss"] == b["loss"] and a["val_loss"] == b["val_loss"]
        ma, mb = (read(fast_runs[k] / variant / "metrics.json") for k in "ab")
        assert ma["confusion_matrix"] == mb["confusion_matrix"] and ma["macro_f1"] == mb["macro_f1"]


def test_bundled_weights_learn_the_tiny_task(tiny_data, tmp_path):
    # random-init MobileNet features are ~0 everywhere, so learning is checked with the real ImageNet weights
    result = train("--data", tiny_data, "--out", tmp_path / "r", "--variant", "fc", "--epochs", "15",
                   "--patience", "0", "--lr-patience", "0", "--lr", "1e-3", "--batch-size", "8")
    assert result.exit_code == 0, result.output
    hist = read(tmp_path / "r" / "fc" / "history.json")
    assert hist["loss"][-1] < 0.6 * hist["loss"][0]
    assert read(tmp_path / "r" / "fc" / "metrics.json")["accuracy"] >= 0.75  # chance is 0.25


def test_mirrored_strategy_on_cpu(tiny_data, tmp_path):
    result = train("--data", tiny_data, "--out", tmp_path / "m", "--variant", "fc", "--strategy", "mirrored", *FAST)
    assert result.exit_code == 0, result.output
    run = read(tmp_path / "m" / "run.json")
    assert run["devices"]["strategy"] == "MirroredStrategy" and run["devices"]["replicas"] >= 1


def test_augment_and_finetune_train_the_full_network(tiny_data, tmp_path):
    result = train("--data", tiny_data, "--out", tmp_path / "f", "--variant", "fc,finetune", "--augment",
                   "--unfreeze-blocks", "1", "--finetune-epochs", "1", "--class-weight", "balanced", "--alpha", "0.25",
                   "--finetune-head", "mlp",
                   "--weights", "none", "--epochs", "1", "--cache-views", "1")
    assert result.exit_code == 0, result.output
    fc = read(tmp_path / "f" / "fc" / "history.json")
    ft = read(tmp_path / "f" / "finetune" / "history.json")
    assert fc["mode"] == "full-augmented"
    assert ft["phase1_epochs"] == 1 and len(ft["loss"]) == 2
    m = read(tmp_path / "f" / "finetune" / "metrics.json")
    assert m["params_trainable"] > read(tmp_path / "f" / "fc" / "metrics.json")["params_trainable"]


def test_class_folder_layout_is_split_70_15_15(tmp_path):
    data = make_dataset(tmp_path / "flat", counts={"train": 14, "val": 3, "test": 3}, split_layout=False)
    result = train("--data", data, "--out", tmp_path / "r", "--variant", "fc", "--seed", "5", *FAST)
    assert result.exit_code == 0, result.output
    run = read(tmp_path / "r" / "run.json")
    assert run["data"]["layout"] == "class-folders" and run["data"]["split_seed"] == 5
    counts = run["data"]["counts"]
    assert all(counts["train"][c] == 14 and counts["val"][c] == 3 and counts["test"][c] == 3 for c in run["classes"])


def test_int8_aware_trains_on_int8_cuts_and_records_them(tiny_data, tmp_path):
    plain, aware = tmp_path / "plain", tmp_path / "aware"
    base = ["--data", tiny_data, "--variant", "fc,two_conv", "--epochs", "2", "--patience", "0",
            "--cache-views", "1"]
    assert train(*base, "--out", plain).exit_code == 0
    result = train(*base, "--out", aware, "--int8-aware")
    assert result.exit_code == 0, result.output
    record = read(aware / "run.json")["int8_aware"]
    assert record["size"] == 32 and record["seed"] == 0 and len(record["sha256"]) == 64  # whole tiny train split
    assert read(plain / "run.json")["int8_aware"] is None
    for variant in ("fc", "two_conv"):
        m = read(aware / variant / "metrics.json")
        assert set(m["int8_backbone_agreement"]) == {"val", "test"}
        assert all(0.0 <= a <= 1.0 for a in m["int8_backbone_agreement"].values())
        assert "int8_backbone_agreement" not in read(plain / variant / "metrics.json")
        # the int8 views are real training data: same seed, different weights
        hist = read(aware / variant / "history.json")
        assert hist["mode"] == "cached, int8-aware" and hist["loss"] != read(plain / variant / "history.json")["loss"]


def test_int8_aware_refuses_augment(tiny_data, tmp_path):
    result = train("--data", tiny_data, "--out", tmp_path / "x", "--variant", "fc", "--augment", "--int8-aware", *FAST)
    assert result.exit_code != 0
    assert "--int8-aware" in result.output and "--augment" in result.output
    assert not (tmp_path / "x").exists()
