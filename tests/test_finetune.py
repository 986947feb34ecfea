"""`cxredge train --variant finetune` (the whole-network recipe) on tiny data, and its parts."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import invoke, make_dataset, read

pytest.importorskip("cxredge.keras")

FAST = ["--alpha", "0.25", "--weights", "none", "--no-audit", "--cache-views", "1", "--batch-size", "16"]
PAIR_CLASSES = ("COVID", "Normal", "Pneumonia-Bacterial", "Pneumonia-Viral")


@pytest.fixture(scope="module")
def pair_data(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("pair") / "data", classes=PAIR_CLASSES)


@pytest.fixture(scope="module")
def ft_runs(pair_data, tmp_path_factory):
    """The default recipe (whole network, BN frozen: inference mode), the same with BN in training mode,
    and BN training mode with the stem's and first 2 blocks' statistics frozen."""
    base = tmp_path_factory.mktemp("ft")
    for name, extra in (("default", []), ("train", ["--bn-mode", "train"]),
                        ("freeze2", ["--bn-mode", "train", "--bn-freeze-blocks", "2"])):
        result = invoke("train", "--data", pair_data, "--out", base / name, "--variant", "finetune", "--epochs", "1",
                        "--finetune-epochs", "3", "--patience", "0", *FAST, *extra)
        assert result.exit_code == 0, result.output
    return base


def test_default_finetune_trains_every_weight_with_the_linear_head(ft_runs):
    from cxredge.keras import keras
    m = read(ft_runs / "default" / "finetune" / "metrics.json")
    model = keras.models.load_model(ft_runs / "default" / "finetune" / "model.keras", compile=False)
    moving = sum(2 * int(layer.moving_mean.shape[0]) for layer in model.layers
                 if isinstance(layer, keras.layers.BatchNormalization))
    assert m["params_total"] - m["params_trainable"] == moving  # only BN moving statistics do not train
    settings = read(ft_runs / "default" / "run.json")["settings"]
    assert settings["unfreeze_blocks"] == "all" and settings["bn_mode"] == "inference"
    assert settings["finetune_head"] == "linear" and settings["weight_decay"] > 0
    names = [layer.name for layer in model.layers]
    assert "head_out" in names and "head_fc1" not in names


def test_history_records_both_phases_and_val_macro_f1(ft_runs):
    hist = read(ft_runs / "default" / "finetune" / "history.json")
    assert hist["phase1_epochs"] == 1 and len(hist["loss"]) == 4 and len(hist["epoch_seconds"]) == 4
    assert len(hist["phase2_val_macro_f1"]) == 3 and hist["stop_reason"] == "all epochs"
    best = hist["best_epoch"] - hist["phase1_epochs"]
    assert hist["best_val"]["macro_f1"] == max(hist["phase2_val_macro_f1"])
    assert hist["best_val"]["macro_f1"] == hist["phase2_val_macro_f1"][best - 1]
    m = read(ft_runs / "default" / "finetune" / "metrics.json")
    assert m["val"] == hist["best_val"] and 0.0 <= m["pair_accuracy"] <= 1.0


def test_best_epoch_weights_are_the_saved_ones(ft_runs, pair_data):
    """Re-evaluating model.keras on val gives the best epoch's val scores (weights restored)."""
    from cxredge.edge.data.dataset import load_split, scan
    from cxredge.keras import keras
    from cxredge.train.finetune import val_scores
    hist = read(ft_runs / "default" / "finetune" / "history.json")
    model = keras.models.load_model(ft_runs / "default" / "finetune" / "model.keras", compile=False)
    ds = scan(pair_data)
    val = load_split(ds, "val")
    scores = val_scores(model, val.x, val.y, ds.classes)
    assert scores["val_macro_f1"] == pytest.approx(hist["best_val"]["macro_f1"], abs=1e-6)
    assert scores["val_loss"] == pytest.approx(hist["best_val"]["loss"], rel=1e-4)


def test_bn_mode_train_moves_the_moving_statistics_and_inference_does_not(ft_runs):
    from cxredge.keras import keras
    stats = {}
    for mode, run in (("train", "train"), ("inference", "default")):
        model = keras.models.load_model(ft_runs / run / "finetune" / "model.keras", compile=False)
        stats[mode] = model.get_layer("conv1_bn").moving_mean.numpy()
    assert np.abs(stats["train"]).max() > 1e-4  # weights none: moving means start at 0
    assert np.abs(stats["inference"]).max() == 0.0


def test_bn_freeze_blocks_keeps_the_stem_and_first_blocks_statistics(ft_runs):
    from cxredge.keras import keras
    from cxredge.train.finetune import bn_block
    model = keras.models.load_model(ft_runs / "freeze2" / "finetune" / "model.keras", compile=False)
    moved = {layer.name: float(np.abs(layer.moving_mean.numpy()).max()) for layer in model.layers
             if isinstance(layer, keras.layers.BatchNormalization)}
    assert all(moved[n] == 0.0 for n in ("conv1_bn", "conv_dw_1_bn", "conv_pw_1_bn", "conv_dw_2_bn", "conv_pw_2_bn"))
    assert moved["conv_dw_3_bn"] > 0.0 and moved["conv_pw_13_bn"] > 0.0  # weights none: they start at 0
    assert [bn_block(n) for n in ("conv1_bn", "conv_dw_7_bn", "conv_pw_13_bn", "head_bn")] == [0, 7, 13, None]
    assert "stem + blocks 1-2 frozen" in read(ft_runs / "freeze2" / "finetune" / "history.json")["mode"]


def test_max_minutes_stops_each_phase_after_one_epoch(pair_data, tmp_path):
    result = invoke("train", "--data", pair_data, "--out", tmp_path / "b", "--variant", "finetune", "--epochs", "6",
                    "--finetune-epochs", "6", "--max-minutes", "0.001", *FAST)
    assert result.exit_code == 0, result.output
    hist = read(tmp_path / "b" / "finetune" / "history.json")
    assert hist["phase1_epochs"] == 1 and len(hist["loss"]) == 2
    assert hist["stop_reason"].startswith("time budget")
    assert (tmp_path / "b" / "finetune" / "model.keras").stat().st_size > 0


def test_cached_variants_honour_max_minutes(tiny_data, tmp_path):
    result = invoke("train", "--data", tiny_data, "--out", tmp_path / "c", "--variant", "fc", "--epochs", "6",
                    "--max-minutes", "0.001", *FAST)
    assert result.exit_code == 0, result.output
    assert len(read(tmp_path / "c" / "fc" / "history.json")["loss"]) == 1


@pytest.mark.parametrize("args, message", [
    (["--unfreeze-blocks", "0"], "--unfreeze-blocks 0: expected all or 1..13"),
    (["--unfreeze-blocks", "14"], "--unfreeze-blocks 14"),
    (["--unfreeze-blocks", "most"], "--unfreeze-blocks most"),
    (["--bn-mode", "frozen"], "--bn-mode frozen: expected train or inference"),
    (["--finetune-head", "conv"], "--finetune-head conv"),
    (["--finetune-augment", "heavy"], "--finetune-augment heavy"),
    (["--max-minutes", "-1"], "--max-minutes -1.0"),
    (["--weight-decay", "-0.1"], "--weight-decay -0.1"),
    (["--warmup-epochs", "-1"], "--warmup-epochs -1.0"),
    (["--finetune-patience", "-1"], "--finetune-patience -1"),
    (["--ema", "1"], "--ema 1.0"),
    (["--bn-freeze-blocks", "14"], "--bn-freeze-blocks 14: expected 0..13"),
    (["--bn-freeze-blocks", "3"], "--bn-freeze-blocks 3: needs --bn-mode train (--bn-mode inference already freezes"),
    (["--pair-weight", "0"], "--pair-weight 0.0"),
    (["--pair-weight", "2"], "have no Bacterial/Viral pneumonia pair"),  # tiny_data: alpha, beta, gamma, delta
    (["--ema", "-0.5"], "--ema -0.5"),
])
def test_bad_finetune_options_are_one_line_errors(tiny_data, tmp_path, args, message):
    result = invoke("train", "--data", tiny_data, "--out", tmp_path / "x", "--variant", "finetune", *FAST, *args)
    assert result.exit_code == 1 and message in result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "x").exists()


def test_warmup_cosine_schedule():
    from cxredge.train.finetune import WarmupCosine
    s = WarmupCosine(1e-3, warmup=10, total=110)
    lrs = np.array([float(s(i)) for i in range(111)])
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)
    assert np.all(np.diff(lrs[:10]) > 0) and np.all(np.diff(lrs[10:]) <= 1e-12)
    assert lrs[60] == pytest.approx(5e-4, rel=1e-3) and lrs[110] == pytest.approx(0.0, abs=1e-9)
    assert WarmupCosine(**s.get_config()).get_config() == s.get_config()


def test_pair_weight_scales_only_the_hard_pair():
    from cxredge.train.finetune import pair_weighted
    cw = np.array([1.0, 2.0, 1.0, 0.5], np.float32)
    np.testing.assert_allclose(pair_weighted(cw, PAIR_CLASSES, 3.0), [1.0, 2.0, 3.0, 1.5])
    np.testing.assert_allclose(cw, [1.0, 2.0, 1.0, 0.5])  # the input is not changed


def test_pair_accuracy_counts_the_other_pneumonia_as_wrong():
    from cxredge.train.finetune import pair_accuracy
    y = np.array([0, 1, 2, 2, 3, 3])
    pred = np.array([1, 1, 2, 3, 3, 0])  # COVID/Normal rows are ignored; 2->3 and 3->0 are wrong
    assert pair_accuracy(y, pred, PAIR_CLASSES) == pytest.approx(0.5)
    assert pair_accuracy(y, pred, ("a", "b", "c", "d")) is None


def test_light_preset_has_no_flip_and_none_leaves_pixels():
    from cxredge.keras import keras
    from cxredge.train.augment import augmenter, image_dataset
    kinds = {type(layer) for layer in augmenter(0, preset="light").layers}
    assert keras.layers.RandomTranslation in kinds and keras.layers.RandomFlip not in kinds
    x = np.random.default_rng(0).integers(0, 256, (4, 224, 224, 3), dtype=np.uint8)
    batch = next(iter(image_dataset(x, np.arange(4), 4, 4, 0, augment=True, preset="none", shuffle=False)))
    assert np.array_equal(batch[0].numpy(), x.astype(np.float32))


def test_quantize_takes_the_finetuned_model(ft_runs, tmp_path):
    import shutil
    run = tmp_path / "q"
    shutil.copytree(ft_runs / "default", run)
    result = invoke("quantize", "--run", run, "--variant", "finetune", "--calibration-size", "8",
                    "--bias-correction-images", "4")
    assert result.exit_code == 0, result.output
    side = read(run / "finetune" / "int8.json")
    assert side["precision"] == "int8" and side["input"]["dtype"] == "uint8"
    assert 0.0 <= side["validation"]["agreement"] <= 1.0
    result = invoke("bench", run / "finetune" / "int8.tflite", "--runs", "2", "--warmup", "0", "--limit", "8",
                    "--ci", "0", "--out", tmp_path / "b")
    assert result.exit_code == 0, result.output
    doc = read(tmp_path / "b" / "bench.json")
    assert doc["dataset"]["n"] == 8 and doc["models"]["finetune/int8"]["agreement_with_float"] is not None


def test_weight_ema_averages_every_float_weight_and_swaps_back():
    from cxredge.keras import keras
    from cxredge.train.ema import WeightEMA, effective_decay
    inp = keras.Input((3,))
    model = keras.Model(inp, keras.layers.BatchNormalization()(keras.layers.Dense(2)(inp)))
    start = [w.copy() for w in model.get_weights()]
    ema = WeightEMA(model, 0.9)
    assert len(ema.shadow) == len(start) == 6  # kernel, bias, gamma, beta, moving mean, moving variance
    expected = [w.copy() for w in start]
    rng = np.random.default_rng(0)
    for _ in range(30):
        model.set_weights([rng.normal(size=w.shape).astype(np.float32) for w in start])
        ema.update()
        d = effective_decay(0.9, ema.updates)
        expected = [d * e + (1 - d) * w for e, w in zip(expected, model.get_weights())]
    assert effective_decay(0.9, 1) == pytest.approx(2 / 11) and effective_decay(0.9, 100) == 0.9
    raw = model.get_weights()
    with ema.swapped():
        for got, want in zip(model.get_weights(), expected):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    for got, want in zip(model.get_weights(), raw):
        np.testing.assert_array_equal(got, want)


def test_finetune_with_ema_keeps_the_scored_average(pair_data, tmp_path):
    """--ema: the saved model is the weight average ValMonitor scored at the best epoch."""
    from cxredge.edge.data.dataset import load_split, scan
    from cxredge.keras import keras
    from cxredge.train.finetune import val_scores
    result = invoke("train", "--data", pair_data, "--out", tmp_path / "r", "--variant", "finetune", "--epochs", "1",
                    "--finetune-epochs", "2", "--patience", "0", "--ema", "0.99", *FAST)
    assert result.exit_code == 0, result.output
    hist = read(tmp_path / "r" / "finetune" / "history.json")
    assert hist["ema"] == 0.99 and "weight EMA 0.99" in hist["mode"]
    ds = scan(pair_data)
    val = load_split(ds, "val")
    model = keras.models.load_model(tmp_path / "r" / "finetune" / "model.keras", compile=False)
    scores = val_scores(model, val.x, val.y, ds.classes)  # the loss would differ if the raw weights were saved
    assert scores["val_macro_f1"] == pytest.approx(hist["best_val"]["macro_f1"], abs=1e-6)
    assert scores["val_loss"] == pytest.approx(hist["best_val"]["loss"], rel=1e-4)
