"""The remote bench pipeline: pack the models and images once, then bench each device over SSH. TF-free.

`cxredge bench --remote` calls run_remote_bench once; the progress bars and the console lines are passed
in (a `progress()` context manager with the rich Progress calls add_task / advance / reset / update, and
`say`, called as rich's console.print), so this module never imports the CLI.
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Callable

from rich.markup import escape

from cxredge.edge.bench.run import NullProgress, quiet
from cxredge.errors import CxrError


def bench_args(settings) -> tuple[str, ...]:
    args = ["--threads", ",".join(map(str, settings.threads)), "--delegate", ",".join(settings.delegates),
            "--runs", str(settings.runs), "--warmup", str(settings.warmup)]
    for key, value in settings.delegate_options:
        args += ["--delegate-option", f"{key}={value}"]
    return tuple(args)


def run_remote_bench(source, labels, data, split, limit, settings, out, rs, name=None, ci=2000,
                     progress: Callable[[], contextlib.AbstractContextManager] = NullProgress,
                     say: Callable[..., None] = quiet) -> tuple[list[tuple[str, Path, dict]], list[str]]:
    """Bench `source`'s models on every device of `rs`, one after another; each device's bench.json goes to
    <out>/devices/<label>/ (<label>--<dataset>/ for another dataset than the run's own split).
    Returns (done: [(device, bench.json path, document)], failed: [error line])."""
    from cxredge.edge.bench import store as bench_store
    from cxredge.edge.data import sources
    from cxredge.io import scratch_dir
    from cxredge.remote.pack import device_bundle
    from cxredge.remote.session import BenchJob
    from cxredge.remote.wheel import device_wheel

    with contextlib.ExitStack() as stack:
        ds, where = sources.eval_dataset(source, data, split)
        out_dir = out or source.run_dir or Path(".")
        tmp = stack.enter_context(scratch_dir(out_dir, "remote"))
        chosen = device_bundle(tmp / "bundle.zip", source, ds, split, limit, where)
        say(f"{len(source.entries)} models, {chosen['n']} {split} images from {where} -> "
            f"{len(rs.targets)} device(s), one after another")
        wheel = device_wheel() if rs.use_venv and rs.install is None else None  # this cxredge, for the venv there
        if wheel is not None:
            say(f"device wheel: {wheel.path.name} ({wheel.path.stat().st_size / 1e6:.2f} MB, "
                f"sha256 {wheel.sha256[:12]})", highlight=False)
        # the device's bench.json names the dataset as a local bench would, with the same bootstrap
        args = (*bench_args(settings), "--name", name or bench_store.dataset_name(ds.root), "--ci", str(ci))
        # the run's own split keeps devices/<label>/; another dataset gets devices/<label>--<dataset>/
        own = bench_store.is_run_data(source, data)
        place = None if own else bench_store.safe_name(bench_store.dataset_folder_name(own, split, name, ds.root))
        job = BenchJob(tmp / "bundle.zip", split, args, chosen, labels, wheel, place)
        return run_devices(rs, job, out_dir, progress=progress, say=say)


def run_devices(rs, job, out_dir: Path, progress: Callable[[], contextlib.AbstractContextManager] = NullProgress,
                say: Callable[..., None] = quiet) -> tuple[list[tuple[str, Path, dict]], list[str]]:
    from cxredge.remote.session import DeviceRun

    done, failed = [], []
    with progress() as bar:
        tasks = {t: bar.add_task(f"{t}: waiting", total=1) for t in rs.targets}
        for t in rs.targets:
            view = DeviceView(bar, tasks[t], str(t))
            try:
                path, doc = DeviceRun(t, rs, job, view).run(out_dir)
            except CxrError as exc:
                failed.append(str(exc))
                bar.update(tasks[t], description=f"[red]{t}: failed[/]")
                if len(rs.targets) > 1:  # alone, its error is the command's one error line
                    say(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
                continue
            done.append((str(t), path, doc))
            bar.update(tasks[t], description=f"{t}: done", completed=1, total=1)
            say(f"{t}: wrote [bold]{path}[/]", highlight=False)
    return done, failed


class DeviceView:
    """One rich task per device: its description names the step, the bar fills within the step."""

    def __init__(self, progress, task, name: str):
        self.progress, self.task, self.name = progress, task, name

    def phase(self, text: str, total: int | None = 1) -> None:
        self.progress.reset(self.task, total=total or 1, description=f"{self.name}: {text}")

    def advance(self, n: int = 1) -> None:
        self.progress.advance(self.task, n)
