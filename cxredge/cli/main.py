"""The `cxredge` command: one small module per verb, registered here."""
from __future__ import annotations

import os

import typer

from cxredge import __version__
from cxredge.cli import audit, bench, ensemble, explain, export, predict, quantize, report, train
from cxredge.cli.help_style import flags_without_type, fold_not_cut

flags_without_type()
fold_not_cut()

app = typer.Typer(
    name="cxredge",
    help="Chest X-ray classifiers from data to a measured edge model: train -> quantize -> bench.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"cxredge {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit."),
          verbose: bool = typer.Option(False, "--verbose", help="Show TensorFlow's own log lines (CUDA probing, "
                                       "oneDNN, converter warnings), silenced by default; or CXREDGE_VERBOSE=1.")
          ) -> None:
    """cxredge: train -> quantize -> bench, for chest X-ray classifiers on edge devices."""
    if verbose:  # read by cxredge/keras.py, which every TensorFlow import goes through, before TF loads
        os.environ["CXREDGE_VERBOSE"] = "1"
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"


app.command("train")(train.train)
app.command("ensemble")(ensemble.ensemble)
app.command("quantize")(quantize.quantize)
app.command("bench")(bench.bench)
app.command("predict")(predict.predict)
app.command("export")(export.export)
app.command("report")(report.report)
app.command("audit")(audit.audit)
app.command("explain")(explain.explain)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
