"""cxredge train: MobileNet transfer learning (fc / one_conv / two_conv / finetune) on class folders."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from cxredge.cli import data_options as D
from cxredge.cli.common import check_out_dir, console, handle_errors, split_list
from cxredge.errors import CxrError
from cxredge.paths import DEFAULT_RUN, SAMPLE_DATA
from cxredge.vocab import ALPHAS, STUDY_VARIANTS, TRAIN_VARIANTS

VARIANT_CHOICES = TRAIN_VARIANTS + ("all",)


def parse_variants(value: str) -> tuple[str, ...]:
    """'all' -> the three study variants; 'fc,two_conv' -> both; finetune only when named."""
    items = split_list(value, "--variant", VARIANT_CHOICES)
    out: list[str] = []
    for item in items:
        out += list(STUDY_VARIANTS) if item == "all" else [item]
    return tuple(dict.fromkeys(out))


def parse_blocks(value: str) -> int | str:
    """--unfreeze-blocks: 'all' or an integer 1..13."""
    if value.strip().lower() == "all":
        return "all"
    try:
        blocks = int(value)
    except ValueError:
        raise CxrError(f"--unfreeze-blocks {value}: expected all or 1..13") from None
    if not 1 <= blocks <= 13:
        raise CxrError(f"--unfreeze-blocks {value}: expected all or 1..13")
    return blocks


@handle_errors
def train(
    data: Path = typer.Option(SAMPLE_DATA, "--data", show_default="the bundled sample",
                              help="DIR/SPLIT/CLASS/ images (SPLIT: train, val, test), DIR/CLASS/ (split 70/15/15) "
                                   "or a label TABLE.csv (columns path, label; optional patient_id, "
                                   "split); PNG, JPEG or "
                                   "DICOM (docs/dicom.md)."),
    out: Path = typer.Option(DEFAULT_RUN, "--out", help="Run directory to write."),
    variant: str = typer.Option("all", "--variant",
                                help="fc | one_conv | two_conv | all (the three) | finetune, or a comma list."),
    alpha: float = typer.Option(0.75, "--alpha", help="MobileNet width multiplier: 0.25, 0.5, 0.75 or 1.0."),
    weights: str = typer.Option("bundled", "--weights",
                                help="bundled (ImageNet, alpha 0.75) | imagenet (download) | none | PATH.h5"),
    epochs: int = typer.Option(20, "--epochs", help="Maximum epochs (early stopping on val loss)."),
    batch_size: int = typer.Option(32, "--batch-size"),
    lr: float = typer.Option(3e-4, "--lr", help="Adam learning rate."),
    patience: int = typer.Option(4, "--patience", help="Early-stopping patience in epochs (0 = off)."),
    lr_patience: int = typer.Option(2, "--lr-patience",
                                    help="Cut the learning rate x0.3 after this many epochs without val-loss "
                                         "progress (0 = off)."),
    class_weight: str = typer.Option("none", "--class-weight", help="none | balanced."),
    seed: int = typer.Option(0, "--seed", help="Seeds the split, weights init, shuffles and dropout."),
    augment: bool = typer.Option(False, "--augment",
                                 help="Train the full network on augmented images (no feature cache)."),
    cache_views: int = typer.Option(2, "--cache-views",
                                    help="Cached views per train image: 1 = as is, 2 = + mirrored, more = + randomly "
                                         "augmented (cheap augmentation that keeps the cache)."),
    pixel_noise: float = typer.Option(0.0, "--pixel-noise",
                                      help="Gaussian pixel noise (gray levels, 0..255 scale) on every extra cached "
                                           "view and augmented batch: makes the head ignore pixel-level noise "
                                           "(int8 agreement)."),
    int8_aware: bool = typer.Option(False, "--int8-aware/--no-int8-aware",
                                    help="Also train the head on the cuts the int8-quantized frozen backbone computes "
                                         "(calibrated like cxredge quantize's default): higher int8 agreement after "
                                         "cxredge quantize. Cached variants only."),
    int8_consistency: float = typer.Option(1.0, "--int8-consistency",
                                           help="--int8-aware: weight of the term that pulls the float and int8 "
                                                "answers together (0 = none; higher = more agreement, at "
                                                "some accuracy)."),
    dropout: float = typer.Option(0.3, "--dropout", help="Dropout after each hidden Dense layer of the head."),
    label_smoothing: float = typer.Option(0.1, "--label-smoothing"),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Skip (and count) unreadable images instead of stopping."),
    strategy: str = typer.Option("auto", "--strategy",
                                 help="auto (GPU if TensorFlow sees one) | mirrored (tf.distribute) | cpu."),
    unfreeze_blocks: str = typer.Option("all", "--unfreeze-blocks",
                                        help="finetune: all (the whole network) or the last 1..13 "
                                             "depthwise-separable blocks."),
    finetune_epochs: int = typer.Option(12, "--finetune-epochs",
                                        help="finetune: phase-2 epochs (the cosine schedule's length)."),
    finetune_lr: float = typer.Option(2e-4, "--finetune-lr", help="finetune: phase-2 peak learning rate (AdamW)."),
    finetune_patience: int = typer.Option(6, "--finetune-patience",
                                          help="finetune: stop phase 2 after this many epochs without a val macro-F1 "
                                               "gain (0 = off); the best epoch's weights are kept."),
    warmup_epochs: float = typer.Option(1.0, "--warmup-epochs",
                                        help="finetune: linear learning-rate warm-up, then cosine decay to 0."),
    weight_decay: float = typer.Option(0.05, "--weight-decay",
                                       help="finetune: AdamW decoupled weight decay, not on BatchNorm or "
                                            "biases (0 = Adam)."),
    bn_mode: str = typer.Option("inference", "--bn-mode",
                                help="finetune: BatchNorm frozen on its ImageNet statistics (inference: higher "
                                     "int8 agreement, "
                                     "docs/training.md) or on batch statistics (train)."),
    bn_freeze_blocks: int = typer.Option(0, "--bn-freeze-blocks",
                                         help="finetune with --bn-mode train: BatchNorm of the stem and blocks 1..K "
                                              "keeps its ImageNet statistics (int8 fidelity: their drift inflates the "
                                              "folded weights); 0 = none."),
    finetune_head: str = typer.Option("linear", "--finetune-head",
                                      help="finetune: linear (dropout + Dense(C) on the logits) or mlp "
                                           "(Dense 1024/512/C)."),
    finetune_augment: str = typer.Option("none", "--finetune-augment",
                                         help="finetune: none (the best on val, docs/training.md) | light (small "
                                              "rotation, shift, zoom, "
                                              "contrast) | standard (--augment's)."),
    pair_weight: float = typer.Option(1.0, "--pair-weight",
                                      help="finetune: multiply the loss weight of the Bacterial and Viral pneumonia "
                                           "images (the hard pair) by this (1 = off)."),
    ema: float = typer.Option(0.0, "--ema",
                              help="finetune: score and keep an exponential moving average of the weights with this "
                                   "decay (e.g. 0.998; 0 = off)."),
    max_minutes: float = typer.Option(0.0, "--max-minutes",
                                      help="Stop training before an epoch that would end past this many minutes from "
                                           "the start, keeping the best weights so far (0 = no budget)."),
    ensemble: bool = typer.Option(False, "--ensemble",
                                  help="After training, average the logits of the trained variants into one model, "
                                       "<out>/ensemble/ (as cxredge ensemble does); e.g. --variant "
                                       "two_conv,finetune --ensemble."),
    path_column: str = D.PATH_COLUMN, label_column: str = D.LABEL_COLUMN,
    patient_column: Optional[str] = D.PATIENT_COLUMN, split_column: Optional[str] = D.SPLIT_COLUMN,
    path_pattern: str = D.PATH_PATTERN, label_map: Optional[str] = D.LABEL_MAP,
    patient_regex: Optional[str] = D.PATIENT_REGEX, any_modality: bool = D.ANY_MODALITY,
    cache_dir: Path = typer.Option(None, "--cache-dir",
                                   help="Feature cache folder (default RUN/feature_cache): memory-mapped cuts keyed by "
                                        "weights, alpha, data, cut and view; runs that share it skip the backbone for "
                                        "what is cached. An interrupted pass resumes."),
    cache_dtype: str = typer.Option("float32", "--cache-dtype",
                                    help="float32 (exact: the in-memory path's numbers) | auto (float16 for a cut "
                                         "whose values it keeps to 1e-3 of their range, checked on a first batch: "
                                         "half the disk) | float16."),
    audit: bool = typer.Option(True, "--audit/--no-audit",
                               help="Before training: duplicates and the shortcut probe on the decoded images (a few "
                                    "seconds), warnings printed, audit.json in the run folder."),
) -> None:
    """Train the MobileNet head variants on cached features and write a run directory."""
    variants = parse_variants(variant)
    options = D.data_options(path_column, label_column, patient_column, split_column, path_pattern, label_map,
                             patient_regex, any_modality)
    if alpha not in ALPHAS:
        raise CxrError(f"--alpha {alpha}: expected one of {', '.join(map(str, ALPHAS))}")
    blocks = parse_blocks(unfreeze_blocks)
    if ensemble and len(variants) < 2:
        raise CxrError(f"--ensemble: needs at least 2 variants, --variant {variant} gives {len(variants)}")
    from cxredge.train.settings import TrainSettings

    settings = TrainSettings(variants=variants, alpha=alpha, weights=weights, epochs=epochs, batch_size=batch_size,
                             lr=lr, patience=patience, lr_patience=lr_patience, class_weight=class_weight, seed=seed,
                             augment=augment,
                             cache_views=cache_views, pixel_noise=pixel_noise, int8_aware=int8_aware,
                             int8_consistency=int8_consistency, skip_bad=skip_bad, strategy=strategy,
                             unfreeze_blocks=blocks, dropout=dropout, label_smoothing=label_smoothing,
                             finetune_epochs=finetune_epochs, finetune_lr=finetune_lr, warmup_epochs=warmup_epochs,
                             finetune_patience=finetune_patience,
                             weight_decay=weight_decay, bn_mode=bn_mode, bn_freeze_blocks=bn_freeze_blocks,
                             finetune_head=finetune_head,
                             finetune_augment=finetune_augment, pair_weight=pair_weight, ema=ema,
                             max_minutes=max_minutes, audit=audit,
                             data_options=None if options.is_default() else options.to_dict(),
                             cache_dir=str(cache_dir) if cache_dir else "", cache_dtype=cache_dtype)
    from cxredge.train.variants import resolve_weights

    resolve_weights(weights, alpha)  # fail on a bad --weights before decoding any image
    check_out_dir(out)  # and on an --out that cannot be written
    from cxredge.train.run import train_run

    results = train_run(data, out, settings, console)
    console.print(results_table(results))
    if ensemble:
        from cxredge.cli.ensemble import results_table as ensemble_table
        from cxredge.train.ensemble_run import ensemble_run

        console.print(ensemble_table(ensemble_run(out, list(variants), None, console)))
    console.print(f"run directory: [bold]{out}[/] (run.json, <variant>/model.keras, metrics.json, "
                  f"curves.png, confusion.png)")


def results_table(results: list[dict]) -> Table:
    table = Table(title="cxredge train: test split",
                  caption="F1 / prec / rec: macro averages; params: trainable / total (exact in metrics.json)")
    for col in ("variant", "acc", "F1", "prec", "rec", "params", "epochs", "time"):
        table.add_column(col, justify="left" if col == "variant" else "right", no_wrap=True)
    for m in results:
        table.add_row(m["variant"], f"{m['accuracy']:.3f}", f"{m['macro_f1']:.3f}", f"{m['macro_precision']:.3f}",
                      f"{m['macro_recall']:.3f}",
                      f"{m['params_trainable'] / 1e6:.2f}M / {m['params_total'] / 1e6:.2f}M",
                      str(m["epochs_run"]), f"{m['train_seconds']:.0f} s")
    return table
