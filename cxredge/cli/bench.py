"""cxredge bench: accuracy and latency of every .tflite of a run, of given models, or of a bundle. TF-free."""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape

from cxredge.cli.bench_common import bar, no_row_ok, resolve_source
from cxredge.cli.bench_remote import REMOTE, REMOTE_HELP
from cxredge.cli.common import check_out_dir, console, handle_errors, split_ints, split_list
from cxredge.errors import CxrError
from cxredge.formats import BENCH_JSON, BENCH_MD
from cxredge.paths import DEFAULT_RUN

MIN_CI, MAX_CI = 100, 100_000  # fewer resamples give a noisy 95% interval; more only cost time


@handle_errors
def bench(
    models: Optional[List[Path]] = typer.Argument(None, metavar="[MODEL.tflite|DIR ...|BUNDLE.zip]",
                                                  help="Models, folders of models, or one bundle (default: --run)."),
    run: Optional[Path] = typer.Option(None, "--run",
                                       help=f"Run folder (default {DEFAULT_RUN} when no MODEL is given)."),
    data: Optional[Path] = typer.Option(None, "--data",
                                        help="Labelled images (default: the bundle's test images or the run's "
                                             "dataset). An external test set: DIR/test/<class>/ or DIR/<class>/ "
                                             "(every image is test); "
                                             "class folders are matched to the model's labels by name."),
    split: str = typer.Option("test", "--split", help="train | val | test | all."),
    name: Optional[str] = typer.Option(None, "--name", help="Name of the dataset in bench.json and the report "
                                       "(default: the folder's name)."),
    ci: int = typer.Option(2000, "--ci", help="Bootstrap resamples for the 95% confidence intervals: "
                           "0 (none) or 100 to 100000."),
    threads: str = typer.Option("1", "--threads", help="Thread counts, e.g. 1,2,4."),
    delegate: str = typer.Option("xnnpack", "--delegate",
                                 help="xnnpack | none | edgetpu | gpu | PATH.so, comma-separated."),
    delegate_option: Optional[List[str]] = typer.Option(None, "--delegate-option",
                                                        help="KEY=VALUE for external delegates (repeatable)."),
    runs: int = typer.Option(100, "--runs", help="Timed invokes per row."),
    warmup: int = typer.Option(10, "--warmup", help="Untimed invokes before timing."),
    limit: Optional[int] = typer.Option(None, "--limit", help="At most N images (stratified) for accuracy."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Skip unreadable images (listed in bench.json "
                                  "dataset.skipped) and bench the rest, instead of stopping (as audit and train)."),
    labels: Optional[Path] = typer.Option(None, "--labels", help="Labels for bare .tflite files (one per line)."),
    out: Optional[Path] = typer.Option(None, "--out",
                                       help="Where bench.json/md and plots go (default: the run folder, else .)."),
    remote: Optional[List[str]] = typer.Option(None, "--remote", rich_help_panel=REMOTE, help=REMOTE_HELP["remote"]),
    remote_python: Optional[str] = typer.Option(None, "--remote-python", rich_help_panel=REMOTE,
                                                help=REMOTE_HELP["python"]),
    remote_venv: Optional[str] = typer.Option(None, "--remote-venv", rich_help_panel=REMOTE, help=REMOTE_HELP["venv"]),
    remote_install: Optional[str] = typer.Option(None, "--remote-install", rich_help_panel=REMOTE,
                                                 help=REMOTE_HELP["install"]),
    remote_env: Optional[List[str]] = typer.Option(None, "--remote-env", rich_help_panel=REMOTE,
                                                   help=REMOTE_HELP["env"]),
    remote_prefix: Optional[str] = typer.Option(None, "--remote-prefix", rich_help_panel=REMOTE,
                                                help=REMOTE_HELP["prefix"]),
    ssh_option: Optional[List[str]] = typer.Option(None, "--ssh-option", rich_help_panel=REMOTE,
                                                   help=REMOTE_HELP["ssh_option"]),
    ssh_config: Optional[Path] = typer.Option(None, "--ssh-config", rich_help_panel=REMOTE,
                                              help=REMOTE_HELP["ssh_config"]),
) -> None:
    """Bench accuracy (vs the labels) and latency (init, first, median/p90/p99) of TFLite models, without TensorFlow."""
    from cxredge.edge.bench import results
    from cxredge.edge.bench.measure import BenchSettings
    from cxredge.edge.runtime.interpreter import check_threads

    settings = BenchSettings(threads=tuple(split_ints(threads, "--threads")),
                             delegates=tuple(split_list(delegate, "--delegate")),
                             delegate_options=parse_options(delegate_option or []), runs=runs, warmup=warmup)
    if limit is not None and limit < 1:
        raise CxrError(f"--limit {limit}: must be >= 1")
    if ci != 0 and not MIN_CI <= ci <= MAX_CI:
        raise CxrError(f"--ci {ci}: bootstrap resamples must be 0 (no confidence intervals) or {MIN_CI} to {MAX_CI}")
    check_out_dir(out)
    if remote:  # the models and the chosen images go to each device over SSH (cxredge/remote/)
        if skip_bad:
            raise CxrError("--skip-bad: not available with --remote yet (the images are chosen here and must all "
                           "decode); drop the unreadable files or bench without --remote")
        from cxredge.cli.bench_remote import bench_remote, remote_settings

        rs = remote_settings(remote, remote_python, remote_venv, remote_install, remote_env, ssh_option, ssh_config,
                             remote_prefix)
        return bench_remote(models or [], run, labels, data, split, limit, settings, out, rs, name=name, ci=ci)
    for t in settings.threads:  # here; a remote device checks its own --threads against its own cores
        check_threads(t)
    with contextlib.ExitStack() as stack:
        source = resolve_source(models or [], run, labels, stack, out)
        doc, out_dir = execute(source, data, split, limit, settings, out, name=name, ci=ci, skip_bad=skip_bad)
    failed = results.failures(doc)
    for line in failed:
        console.print(f"[red]failed[/] {escape(line)}", highlight=False, soft_wrap=True)
    none_ok = no_row_ok(doc)
    if none_ok:  # exit 1: nothing was measured; bench.failed.json records each error, bench.json is kept
        raise CxrError(none_ok)
    console.print(f"wrote [bold]{escape(str(out_dir / BENCH_JSON))}[/], {BENCH_MD}"
                  + (", plots" if doc.get("plots") else ""), highlight=False, soft_wrap=True)
    if failed:
        console.print(f"[yellow]{len(failed)} of {len(doc['results'])} rows failed; the others ran[/]")


def parse_options(items: list[str]) -> tuple[tuple[str, str], ...]:
    out = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise CxrError(f"--delegate-option {item}: expected KEY=VALUE")
        out.append((key.strip(), value.strip()))
    return tuple(out)


def execute(source, data, split, limit, settings, out, name=None, ci=2000, skip_bad=False):
    """The local bench (cxredge/edge/bench/run.py) with this console's progress bar and lines."""
    from cxredge.edge.bench.run import run_local_bench

    return run_local_bench(source, data, split, limit, settings, out, name=name, ci=ci, skip_bad=skip_bad,
                           progress=bar, say=console.print, width=console.width)
