"""The system OpenSSH client through subprocess: keys or ssh-agent only, host keys always checked. TF-free.

Every call runs `ssh -o BatchMode=yes -o StrictHostKeyChecking=yes [--ssh-option ...] [-F CONFIG]
-p PORT -- [USER@]HOST sh -c SCRIPT`:
- BatchMode=yes: ssh never asks for a password or a passphrase; a key (or the agent) works or the call
  fails with "auth refused". cxredge handles no secret of its own.
- StrictHostKeyChecking=yes (or accept-new when asked for): an unknown or changed host key is an error
  that names the fix. Options that would switch checking off are refused.
- The user's ~/.ssh/config applies as for any ssh (IdentityFile, ProxyJump, ...); --ssh-config names
  another file and --ssh-option passes `-o KEY=VALUE`.
- All calls to one device share one connection (ControlMaster, socket in a private temporary folder),
  closed at the end.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from cxredge.errors import CxrError

FORCED = {"batchmode", "controlmaster", "controlpath", "controlpersist"}
UNREACHABLE = ("connection refused", "no route to host", "connection timed out", "operation timed out",
               "could not resolve hostname", "network is unreachable", "name or service not known",
               "temporary failure in name resolution", "connection reset")
HOSTKEY = ("host key verification failed", "remote host identification has changed", "host key for")
AUTH = ("permission denied", "too many authentication failures", "authentication failed", "no mutual signature")
NOISE = ("warning: permanently added", "** ", "pseudo-terminal")
SAFE_LABEL = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class Target:
    """One device: [NAME=][USER@]HOST[:PORT] (HOST may be [IPv6])."""
    host: str
    user: str | None = None
    port: int | None = None
    name: str | None = None

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host and self.port else self.host
        return (f"{self.user}@" if self.user else "") + host + (f":{self.port}" if self.port else "")

    @property
    def destination(self) -> str:
        return f"{self.user}@{self.host}" if self.user else self.host

    @property
    def label(self) -> str:
        """The folder name under devices/: NAME, else HOST (with -PORT when a port is given)."""
        raw = self.name or (self.host + (f"-{self.port}" if self.port else ""))
        return SAFE_LABEL.sub("_", raw).strip(".") or "device"


def parse_target(text: str) -> Target:
    """'[NAME=][USER@]HOST[:PORT]' -> Target, or CxrError naming the bad part."""
    raw = text.strip()
    name, _, rest = raw.partition("=") if "=" in raw.split("@")[0] else ("", "", raw)
    user, _, hostport = rest.rpartition("@")
    host, port = hostport, None
    if hostport.startswith("["):
        host, _, tail = hostport[1:].partition("]")
        if tail and not tail.startswith(":"):
            raise CxrError(f"--remote {text}: expected [IPv6]:PORT")
        port = tail[1:] or None
    elif hostport.count(":") == 1:
        host, port = hostport.split(":")
    bad = [p for p in (host, user) if p and (p.startswith("-") or re.search(r"\s|[;&|`$'\"<>]", p))]
    if not host or bad or (name and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name)):
        raise CxrError(f"--remote {text}: expected [NAME=]USER@HOST[:PORT] (NAME: letters, digits, . _ -)")
    if port is not None:
        if not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:  # '²'.isdigit() is True
            raise CxrError(f"--remote {text}: port {port!r} is not a number from 1 to 65535")
        port = int(port)
    return Target(host, user or None, port, name or None)


@dataclass(frozen=True)
class SshSettings:
    options: tuple[tuple[str, str], ...] = ()
    config: Path | None = None
    connect_timeout: int = 10

    def __post_init__(self):
        for key, value in self.options:
            k, v = key.lower(), value.strip().lower()
            if k in FORCED:
                raise CxrError(f"--ssh-option {key}={value}: cxredge sets {key} itself")
            if k == "stricthostkeychecking" and v not in ("yes", "accept-new"):
                raise CxrError(f"--ssh-option {key}={value}: host key checking stays on (yes or accept-new)")
        if self.config is not None and not self.config.exists():
            raise CxrError(f"--ssh-config {self.config}: file not found")

    @property
    def strict(self) -> str:
        asked = [v for k, v in self.options if k.lower() == "stricthostkeychecking"]
        return asked[0] if asked else "yes"


def parse_options(items: list[str]) -> tuple[tuple[str, str], ...]:
    out = []
    for item in items:
        key, sep, value = item.partition("=") if "=" in item else item.strip().partition(" ")
        if not sep or not key.strip() or not value.strip():
            raise CxrError(f"--ssh-option {item}: expected KEY=VALUE (as ssh -o takes it)")
        out.append((key.strip(), value.strip()))
    return tuple(out)


def last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.replace("\r", "").splitlines()]
    lines = [ln for ln in lines if ln and not ln.lower().startswith(NOISE)]
    return lines[-1][:300] if lines else ""


def ssh_error(target: Target, stderr: str) -> CxrError:
    """The one-line error for a failed ssh connection (exit 255), from what ssh printed."""
    detail, low = last_line(stderr), stderr.lower()
    if any(k in low for k in UNREACHABLE):
        return CxrError(f"{target}: host unreachable ({detail})")
    if any(k in low for k in HOSTKEY):
        return CxrError(f"{target}: host key not known or changed ({detail}); host key checking stays on: "
                        f"check the key and add it to known_hosts (ssh {target.destination} once by hand)")
    if any(k in low for k in AUTH):
        return CxrError(f"{target}: SSH authentication refused ({detail}); keys or ssh-agent only: install your "
                        "public key there (ssh-copy-id) or name one with --ssh-option IdentityFile=PATH")
    return CxrError(f"{target}: ssh failed ({detail or 'exit 255 and no message'})")


class Connection:
    """ssh calls to one target over one shared connection; use as a context manager."""

    def __init__(self, target: Target, settings: SshSettings):
        self.target, self.settings = target, settings
        self.ssh = shutil.which("ssh")
        if self.ssh is None:
            raise CxrError("--remote: no ssh client on this machine (install OpenSSH: apt install openssh-client)")
        # a short folder: a unix socket path must stay under ~104 bytes (macOS's TMPDIR is long)
        self.control = Path(tempfile.mkdtemp(prefix="cxr-ssh-", dir="/tmp" if os.path.isdir("/tmp") else None))

    def __enter__(self) -> "Connection":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def base(self) -> list[str]:
        s = self.settings
        argv = [self.ssh, "-o", "BatchMode=yes", "-o", f"StrictHostKeyChecking={s.strict}"]
        for key, value in s.options:
            argv += ["-o", f"{key}={value}"]
        if s.config is not None:
            argv += ["-F", str(s.config)]
        argv += ["-o", f"ConnectTimeout={s.connect_timeout}", "-o", "ServerAliveInterval=15",
                 "-o", "ServerAliveCountMax=4"]
        if os.name != "nt":  # Windows' OpenSSH has no connection sharing
            argv += ["-o", "ControlMaster=auto", "-o", f"ControlPath={self.control}/%C", "-o", "ControlPersist=120"]
        if self.target.port:
            argv += ["-p", str(self.target.port)]
        return argv

    def argv(self, script: str) -> list[str]:
        return self.base() + ["--", self.target.destination, "sh -c " + shlex.quote(script)]

    def run(self, script: str, what: str, stdin: bytes | None = None, timeout: float | None = 120,
            stdout=None) -> tuple[int, bytes, str]:
        """Run a POSIX sh script there: (exit code, stdout, stderr). ssh-level failures raise CxrError."""
        try:
            res = subprocess.run(self.argv(script), input=stdin, stdout=stdout or subprocess.PIPE,
                                 stderr=subprocess.PIPE, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise CxrError(f"{self.target}: no answer within {timeout:.0f} s ({what})") from None
        err = res.stderr.decode("utf-8", "replace")
        if res.returncode == 255:
            raise ssh_error(self.target, err)
        return res.returncode, res.stdout or b"", err

    def send(self, local: Path, remote_path: str, advance: Callable[[int], None] | None = None) -> tuple[int, str]:
        """Stream a file to `remote_path` there (`cat >`); (exit code, stderr)."""
        with tempfile.TemporaryFile() as err, open(local, "rb") as src:
            proc = subprocess.Popen(self.argv(f"cat > {shlex.quote(remote_path)}"), stdin=subprocess.PIPE,
                                    stdout=subprocess.DEVNULL, stderr=err)
            try:
                while chunk := src.read(1 << 18):
                    proc.stdin.write(chunk)
                    if advance:
                        advance(len(chunk))
                proc.stdin.close()
            except BrokenPipeError:
                pass
            finally:
                rc = proc.wait()
            err.seek(0)
            text = err.read().decode("utf-8", "replace")
        if rc == 255:
            raise ssh_error(self.target, text)
        return rc, text

    def close(self) -> None:
        if self.control.is_dir() and any(self.control.iterdir()):  # a master connection is up
            subprocess.run(self.base() + ["-O", "exit", "--", self.target.destination], capture_output=True,
                           timeout=15, check=False)
        shutil.rmtree(self.control, ignore_errors=True)
