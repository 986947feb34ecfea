"""What `cxredge bench` and `cxredge bench --remote` share: the models to bench, the progress bar, the one
line when nothing ran. Below both commands, so neither imports the other's module back."""
from __future__ import annotations

import contextlib
from pathlib import Path

from cxredge.cli.common import console
from cxredge.edge.bench.store import dataset_name, no_row_ok  # noqa: F401  (the library's; re-exported)
from cxredge.errors import CxrError
from cxredge.paths import DEFAULT_RUN


def resolve_source(models: list[Path], run: Path | None, labels: Path | None, stack: contextlib.ExitStack,
                   out: Path | None = None):
    from cxredge.edge.data import sources
    from cxredge.edge.formats import bundle
    from cxredge.io import scratch_dir

    if models and run is not None:
        raise CxrError("give either --run DIR or MODEL/BUNDLE arguments, not both")
    bundles = [m for m in models if bundle.is_bundle(m)]
    if bundles:
        if len(models) != 1:
            raise CxrError(f"{bundles[0]}: a bundle is benched on its own (no other MODEL arguments)")
        dest = stack.enter_context(scratch_dir(out or Path(".")))  # with the results: a SIGKILL's leftover is found
        bundle.open_bundle(bundles[0], dest)
        src = sources.from_run(dest, labels)
        src.origin, src.run_dir = "bundle", None
        return src
    if models:
        return sources.from_paths(models, labels)
    return sources.from_run(run or DEFAULT_RUN, labels)


def bar():
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=True)
