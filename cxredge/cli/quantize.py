"""cxredge quantize: float32 / int8 / float16 / dynamic / QAT .tflite models, each validated."""
from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cxredge.cli.common import check_out_dir, console, handle_errors, split_list
from cxredge.convert.bias_correction import DEFAULT_IMAGES
from cxredge.convert.calibration import DEFAULT_SIZE
from cxredge.convert.equalize import DEFAULT_PAIRS as EQUALIZE_PAIRS
from cxredge.convert.rounding import DEFAULT_IMAGES as ROUNDING_IMAGES
from cxredge.convert.rounding import MODES as ROUNDING_MODES
from cxredge.errors import CxrError
from cxredge.formats import QUANTIZE_JSON
from cxredge.paths import DEFAULT_RUN
from cxredge.vocab import EVAL_SPLITS, MODES, STUDY_VARIANTS, VARIANTS

MODE_CHOICES = MODES + ("all",)


def parse_modes(value: str) -> tuple[str, ...]:
    """'int8' -> float32 + int8; 'all' -> every mode; float32 is always written (the reference)."""
    items = split_list(value, "--mode", MODE_CHOICES)
    out = ["float32"]
    for item in items:
        out += list(MODES) if item == "all" else [item]
    return tuple(dict.fromkeys(out))


def parse_variants(value: str, run_variants: list[str] | None) -> tuple[str, ...]:
    items = split_list(value, "--variant", VARIANTS + ("all",))
    out: list[str] = []
    for item in items:
        out += list(run_variants or STUDY_VARIANTS) if item == "all" else [item]
    return tuple(dict.fromkeys(v for v in out if v in VARIANTS))


class _Tracker:
    """Hands out rich progress tasks: `task(description, total)` -> advance(n) callback."""

    def __init__(self, progress: Progress):
        self.progress = progress

    def task(self, description: str, total: int):
        tid = self.progress.add_task(description, total=total)
        return lambda n=1: self.progress.advance(tid, n)


@handle_errors
def quantize(
    run: Path = typer.Option(DEFAULT_RUN, "--run", help="Run directory written by cxredge train."),
    variant: str = typer.Option("all", "--variant",
                                help="fc | one_conv | two_conv | finetune | ensemble | all (the run's variants), "
                                     "or a comma list."),
    mode: str = typer.Option("int8", "--mode",
                             help="int8 | float16 | dynamic | qat | refit | float32 | all, or a comma list. float32 is "
                                  "always written."),
    io: str = typer.Option("uint8", "--io",
                           help="Output type of int8 models: uint8 | int8 (input is always uint8 raw pixels)."),
    calibration_size: int = typer.Option(DEFAULT_SIZE, "--calibration-size",
                                         help="Calibration images: a stratified, seeded sample of the train split."),
    calibration_file: Path = typer.Option(None, "--calibration",
                                          help="Rebuild from a saved calibration manifest instead of drawing one."),
    qat_epochs: int = typer.Option(2, "--qat-epochs", help="QAT fine-tuning epochs."),
    qat_images: int = typer.Option(400, "--qat-images", help="Train images used for QAT (stratified subset)."),
    qat_lr: float = typer.Option(1e-4, "--qat-lr", help="QAT learning rate (Adam)."),
    refit_images: int = typer.Option(1000, "--refit-images",
                                     help="Train images for the int8 head refit (--mode refit)."),
    debug: bool = typer.Option(False, "--debug", help="Write a per-layer int8 error report (int8_debug.json and .md)."),
    float_fallback: int = typer.Option(0, "--float-fallback",
                                       help="Keep the K worst int8 layers in float (writes int8_fallback .tflite)."),
    bias_correction: bool = typer.Option(True, "--bias-correction/--no-bias-correction",
                                         help="Take each int8 layer's mean error (measured on the calibration images) "
                                              "out of its bias."),
    bias_correction_images: int = typer.Option(DEFAULT_IMAGES, "--bias-correction-images",
                                               help="Calibration images (evenly spaced over the manifest) that bias "
                                                    "correction measures on."),
    exact_input: bool = typer.Option(True, "--exact-input/--no-exact-input",
                                     help="Give the pixel-scaling op its exact int8 range, so pixels enter the int8 "
                                          "model losslessly (off: the calibrator's range, 1.5 gray levels a step)."),
    equalize: bool = typer.Option(True, "--equalize/--no-equalize",
                                  help="Scale up the first layers' quiet ReLU6 channels (and down the next layer's "
                                       "kernel) in the copy the int8 converter sees, so they are quantized finer."),
    equalize_pairs: int = typer.Option(EQUALIZE_PAIRS, "--equalize-pairs",
                                       help="Layer pairs from the input that --equalize scales (conv1 -> conv_dw_1 "
                                            "-> conv_pw_1 -> conv_dw_2 is 3)."),
    equalize_margin: float = typer.Option(1.0, "--equalize-margin",
                                          help="A channel's calibration maximum x this is scaled to 6 (>= 1; larger "
                                               "leaves headroom for brighter images than the calibration set's)."),
    rounding: str = typer.Option("nearest", "--rounding",
                                 help="int8 weight rounding: nearest (the converter's) | learned (per layer, "
                                      "against the float layer on the calibration images)."),
    rounding_images: int = typer.Option(ROUNDING_IMAGES, "--rounding-images",
                                        help="Calibration images (evenly spaced) that --rounding learned fits on."),
    split: str = typer.Option("val", "--split", help="Split to validate on: val | test."),
    seed: int = typer.Option(0, "--seed", help="Seed of the calibration sample and QAT."),
) -> None:
    """Convert trained variants to TFLite and check each against its Keras model."""
    from cxredge.convert.equalize import EqualizeSettings
    from cxredge.convert.pipeline import QuantizeSettings, load_run, quantize_run
    from cxredge.convert.qat import QatSettings

    _check_numbers(io, calibration_size, qat_epochs, qat_images, float_fallback, split, qat_lr, refit_images)
    if bias_correction_images < 1:
        raise CxrError(f"--bias-correction-images {bias_correction_images}: must be >= 1")
    if rounding not in ROUNDING_MODES:
        raise CxrError(f"--rounding {rounding}: expected {' or '.join(ROUNDING_MODES)}")
    if rounding_images < 1:
        raise CxrError(f"--rounding-images {rounding_images}: must be >= 1")
    if equalize_pairs < 0:
        raise CxrError(f"--equalize-pairs {equalize_pairs}: must be >= 0")
    if not equalize_margin >= 1.0:
        raise CxrError(f"--equalize-margin {equalize_margin}: must be >= 1")
    run_doc = load_run(run)
    check_out_dir(run, "--run")  # the models are written into the run: fail before converting anything
    settings = QuantizeSettings(
        run=run, variants=parse_variants(variant, run_doc.get("variants")), modes=parse_modes(mode), io=io,
        calibration_size=calibration_size, calibration_file=calibration_file,
        qat=QatSettings(epochs=qat_epochs, images=qat_images, learning_rate=qat_lr, seed=seed), debug=debug,
        float_fallback=float_fallback, seed=seed, split=split, refit_images=refit_images,
        bias_correction=bias_correction, bias_correction_images=bias_correction_images,
        exact_input=exact_input, rounding=rounding, rounding_images=rounding_images,
        equalize=EqualizeSettings(pairs=equalize_pairs, margin=equalize_margin) if equalize else None)
    if not settings.variants:
        raise CxrError(f"--variant {variant}: the run has none of these variants")
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        rows = quantize_run(settings, _Tracker(progress))
    console.print(results_table(rows, split, console.width))
    for r in rows:
        if "fallback" in r:
            fb = r["fallback"]
            console.print(f"{r['variant']} float fallback K={fb['k']} ({', '.join(fb['layers'])}): agreement "
                          f"{100 * fb['agreement_gain']:+.2f} pt, macro-F1 {100 * fb['macro_f1_gain']:+.2f} pt, "
                          f"size {fb['size_cost_bytes'] / 1e6:+.2f} MB vs int8")
    console.print(f"wrote {len(rows)} models under {run}; summary {run / QUANTIZE_JSON}")


def _check_numbers(io, calibration_size, qat_epochs, qat_images, float_fallback, split, qat_lr, refit_images) -> None:
    if io not in ("uint8", "int8"):
        raise CxrError(f"--io {io}: expected uint8 or int8")
    if not qat_lr > 0:
        raise CxrError(f"--qat-lr {qat_lr}: must be > 0")
    if split not in EVAL_SPLITS:
        raise CxrError(f"--split {split}: expected val or test")
    for name, value, low in (("--calibration-size", calibration_size, 1), ("--qat-epochs", qat_epochs, 1),
                             ("--qat-images", qat_images, 1), ("--float-fallback", float_fallback, 0),
                             ("--refit-images", refit_images, 1)):
        if value < low:
            raise CxrError(f"{name} {value}: must be >= {low}")


WIDE = ("variant", "precision", "size", "x float32", "agreement", "macro-F1", "delta F1", "max |dprob|", "ties")
COMPACT = ("variant", "precision", "size", "agreement", "delta F1", "ties")  # fits 80 columns; quantize.json has all


def results_table(rows: list[dict], split: str, width: int = 120) -> Table:
    """Every model against its Keras original; under 100 columns the compact set, names never cut."""
    from rich import box

    columns = WIDE if width >= 100 else COMPACT
    table = Table(title=f"cxredge quantize: each model vs its Keras original ({split} split)", box=box.SIMPLE_HEAD,
                  caption=None if columns == WIDE else f"every column: {QUANTIZE_JSON}")
    for col in columns:
        table.add_column(col, justify="left" if col in ("variant", "precision") else "right", no_wrap=True)
    float_size = {r["variant"]: r["size_bytes"] for r in rows if r["precision"] == "float32"}
    for r in rows:
        ratio = r["size_bytes"] / float_size[r["variant"]] if float_size.get(r["variant"]) else float("nan")
        cells = {"variant": r["variant"], "precision": r["precision"], "size": f"{r['size_bytes'] / 1e6:.2f} MB",
                 "x float32": f"{ratio:.2f}x", "agreement": f"{100 * r['agreement']:.1f}%",
                 "macro-F1": f"{r['macro_f1']:.4f}", "delta F1": f"{100 * r['delta_macro_f1']:+.2f} pt",
                 "max |dprob|": f"{r['max_abs_dprob']:.2e}", "ties": str(r["tied_at_max"])}
        table.add_row(*(cells[c] for c in columns))
    return table
