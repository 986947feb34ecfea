"""cxredge bench --remote: the same bench on other machines over SSH, one device after another. TF-free.

The models and the chosen labelled images are packed once into a bundle (cxredge/remote/pack.py), and the
cxredge running here into a device wheel (cxredge/remote/wheel.py) for the venv there; each device gets them
over ssh, runs `python -m cxredge bench` there and sends bench.json back, which is
written under <out>/devices/<label>/ as soon as it arrives (<label>--<dataset>/ when the data is not the
run's own test split, so each dataset of a device keeps its own bench). A failed device is one red line; the
others still run and keep their results. The pipeline is cxredge/remote/run.py; this module parses the
--remote options, passes it the progress bars and the console, and prints each device's table.
"""
from __future__ import annotations

import contextlib
import shlex

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


def bench_remote(models, run, labels, data, split, limit, settings, out, rs, name=None, ci=2000) -> None:
    """The remote bench (cxredge/remote/run.py) with this console's progress bars and lines, then the report."""
    from cxredge.cli.bench_common import bar, resolve_source
    from cxredge.cli.common import console
    from cxredge.remote.run import run_remote_bench

    with contextlib.ExitStack() as stack:
        source = resolve_source(models, run, labels, stack, out)
        done, failed = run_remote_bench(source, labels, data, split, limit, settings, out, rs, name=name, ci=ci,
                                        progress=bar, say=console.print)
    report(done, failed, len(rs.targets))


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
