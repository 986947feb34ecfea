"""cxredge bench --remote: the same bench on other machines over SSH, one device after another. TF-free.

The models and the chosen labelled images are packed once into a bundle (cxredge/remote/pack.py), and the
cxredge running here into a device wheel (cxredge/remote/wheel.py) for the venv there; each device gets them
over ssh, runs `python -m cxredge bench` there and sends bench.json back, which is
written under <out>/devices/<label>/ as soon as it arrives (<label>--<dataset>/ when the data is not the
run's own test split, so each dataset of a device keeps its own bench). A failed device is one red line; the
others still run and keep their results.
"""
from __future__ import annotations

import contextlib
import shlex
from pathlib import Path

from cxredge.errors import CxrError

REMOTE = "Remote devices (SSH)"
REMOTE_HELP = {
    "remote": "Bench on [NAME=]USER@HOST[:PORT] over SSH instead of here (repeatable: one device after another); "
              "results in <out>/devices/<NAME or HOST>/bench.json (<NAME or HOST>--<dataset>/ for another --data).",
    "python": "Python there: used as is (it must have cxredge), or, with --remote-venv, the one that creates the venv.",
    "venv": "venv there to use, created when missing (default ~/.cache/cxredge/venv unless --remote-python alone).",
    "install": "pip install these arguments there instead of the device wheel of this cxredge (the default: "
               "built here, copied, installed with its dependencies); local files named here are copied first.",
    "env": "KEY=VALUE set for cxredge there (repeatable), e.g. LD_LIBRARY_PATH for a delegate.",
    "prefix": "Words run before python for the bench there, e.g. --remote-prefix 'taskset -c 3' to pin it to a core.",
    "ssh_option": "Passed to ssh as -o KEY=VALUE (repeatable), e.g. IdentityFile=~/.ssh/pi_ed25519. Keys/agent only; "
                  "host key checking stays on.",
    "ssh_config": "An ssh config file (ssh -F FILE) instead of ~/.ssh/config.",
}


def pairs(items: list[str], option: str) -> tuple[tuple[str, str], ...]:
    out = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip().isidentifier():
            raise CxrError(f"{option} {item}: expected KEY=VALUE")
        out.append((key.strip(), value))
    return tuple(out)


def words(value: str | None, option: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    try:
        out = tuple(shlex.split(value))
    except ValueError as exc:
        raise CxrError(f"{option} {value}: {exc}") from None
    if not out:
        raise CxrError(f"{option}: empty")
    return out


def remote_settings(remote, python, venv, install, env, ssh_option, ssh_config, prefix=None):
    from cxredge.remote.session import RemoteSettings
    from cxredge.remote.ssh import SshSettings, parse_options, parse_target

    targets = tuple(parse_target(r) for r in remote)
    labels = [t.label for t in targets]
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        raise CxrError(f"--remote: two devices would write devices/{dup[0]}/; name them: --remote NAME=USER@HOST")
    ssh = SshSettings(parse_options(ssh_option or []), ssh_config)
    return RemoteSettings(targets, ssh, python, venv, words(install, "--remote-install"),
                          pairs(env or [], "--remote-env"), words(prefix, "--remote-prefix") or ())


def bench_args(settings) -> tuple[str, ...]:
    args = ["--threads", ",".join(map(str, settings.threads)), "--delegate", ",".join(settings.delegates),
            "--runs", str(settings.runs), "--warmup", str(settings.warmup)]
    for key, value in settings.delegate_options:
        args += ["--delegate-option", f"{key}={value}"]
    return tuple(args)


def bench_remote(models, run, labels, data, split, limit, settings, out, rs, name=None, ci=2000) -> None:
    from cxredge.cli.bench_common import dataset_name, resolve_source
    from cxredge.cli.common import console
    from cxredge.edge.bench import store as bench_store
    from cxredge.edge.data import sources
    from cxredge.io import scratch_dir
    from cxredge.remote.pack import device_bundle
    from cxredge.remote.session import BenchJob
    from cxredge.remote.wheel import device_wheel

    with contextlib.ExitStack() as stack:
        source = resolve_source(models, run, labels, stack, out)
        ds, where = sources.eval_dataset(source, data, split)
        out_dir = out or source.run_dir or Path(".")
        tmp = stack.enter_context(scratch_dir(out_dir, "remote"))
        chosen = device_bundle(tmp / "bundle.zip", source, ds, split, limit, where)
        console.print(f"{len(source.entries)} models, {chosen['n']} {split} images from {where} -> "
                      f"{len(rs.targets)} device(s), one after another")
        wheel = device_wheel() if rs.use_venv and rs.install is None else None  # this cxredge, for the venv there
        if wheel is not None:
            console.print(f"device wheel: {wheel.path.name} ({wheel.path.stat().st_size / 1e6:.2f} MB, "
                          f"sha256 {wheel.sha256[:12]})", highlight=False)
        # the device's bench.json names the dataset as a local bench would, with the same bootstrap
        args = (*bench_args(settings), "--name", name or dataset_name(ds.root), "--ci", str(ci))
        # the run's own split keeps devices/<label>/; another dataset gets devices/<label>--<dataset>/
        own = bench_store.is_run_data(source, data)
        place = None if own else bench_store.safe_name(bench_store.dataset_folder_name(own, split, name, ds.root))
        job = BenchJob(tmp / "bundle.zip", split, args, chosen, labels, wheel, place)
        done, failed = run_devices(rs, job, out_dir)
    report(done, failed, len(rs.targets))


def run_devices(rs, job, out_dir: Path) -> tuple[list[tuple[str, Path, dict]], list[str]]:
    from rich.markup import escape

    from cxredge.cli.bench_common import bar
    from cxredge.cli.common import console
    from cxredge.remote.session import DeviceRun

    done, failed = [], []
    with bar() as progress:
        tasks = {t: progress.add_task(f"{t}: waiting", total=1) for t in rs.targets}
        for t in rs.targets:
            view = DeviceView(progress, tasks[t], str(t))
            try:
                path, doc = DeviceRun(t, rs, job, view).run(out_dir)
            except CxrError as exc:
                failed.append(str(exc))
                progress.update(tasks[t], description=f"[red]{t}: failed[/]")
                if len(rs.targets) > 1:  # alone, its error is the command's one error line
                    console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
                continue
            done.append((str(t), path, doc))
            progress.update(tasks[t], description=f"{t}: done", completed=1, total=1)
            console.print(f"{t}: wrote [bold]{path}[/]", highlight=False)
    return done, failed


class DeviceView:
    """One rich task per device: its description names the step, the bar fills within the step."""

    def __init__(self, progress, task, name: str):
        self.progress, self.task, self.name = progress, task, name

    def phase(self, text: str, total: int | None = 1) -> None:
        self.progress.reset(self.task, total=total or 1, description=f"{self.name}: {text}")

    def advance(self, n: int = 1) -> None:
        self.progress.advance(self.task, n)


def report(done, failed, n: int) -> None:
    """Each device's table; exit 1 when a device failed or measured nothing (every row failed there)."""
    from rich.markup import escape

    from cxredge.cli.bench_common import no_row_ok
    from cxredge.cli.common import console
    from cxredge.edge.bench.results import rich_table

    for name, path, doc in done:
        console.print(rich_table(doc, title=f"{name} ({path.parent.name})", width=console.width))
    empty = [f"{name}: {no_row_ok(doc)} ({path})" for name, path, doc in done if no_row_ok(doc)]
    failed = failed + empty
    done = [d for d in done if not no_row_ok(d[2])]
    if failed:
        if n == 1:
            raise CxrError(failed[0])
        for line in empty:  # the devices that failed outright were named as they failed
            console.print(f"[bold red]error:[/] {escape(line)}", highlight=False, soft_wrap=True)
        kept = f"; the other {len(done)} device(s) wrote their bench.json" if done else ""
        raise CxrError(f"{len(failed)} of {n} devices failed (errors above){kept}")
