"""The system OpenSSH client through subprocess: keys or ssh-agent only, host keys always checked. TF-free.

Every call runs `ssh -o BatchMode=yes -o StrictHostKeyChecking=yes [--ssh-option ...] [-F CONFIG]
-p PORT -- [USER@]HOST sh -c SCRIPT`:
- BatchMode=yes: ssh never asks for a password or a passphrase; a key (or the agent) works or the call
  fails with "auth refused". cxredge handles no secret of its own.
- StrictHostKeyChecking=yes (or accept-new when asked for): an unknown or changed host key is an error
  that names the fix. Options that would switch checking off are refused (docs/security.md): any
  other StrictHostKeyChecking, KnownHostsCommand, a known-hosts file that is /dev/null or not a file,
  accept-new with a known-hosts file of its own, Include/Match/Host, keys that are not one word; and
  the effective configuration (`ssh -G`, so ~/.ssh/config and --ssh-config count too) is checked
  before the first connection.
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
from cxredge.io import TMP_CHARS, remove_stale

FORCED = {"batchmode", "controlmaster", "controlpath", "controlpersist"}
KNOWN_HOSTS_FILES = {"userknownhostsfile", "globalknownhostsfile"}
NEVER = {"knownhostscommand": "it lets a command vouch for any host key",
         "include": "it reads another config file", "match": "it opens a conditional block",
         "host": "it opens a host block"}
STRICT_OK = {"yes", "true", "ask", "accept-new"}  # ask: with BatchMode=yes, an unknown key fails as with yes
OPTION = re.compile(r"\s*([A-Za-z][A-Za-z0-9]*)(?:\s*=\s*|\s+)(\S.*?)\s*")  # ssh -o: KEY=VALUE or KEY VALUE
UNREACHABLE = ("connection refused", "no route to host", "connection timed out", "operation timed out",
               "could not resolve hostname", "network is unreachable", "name or service not known",
               "temporary failure in name resolution", "connection reset")
HOSTKEY = ("host key verification failed", "remote host identification has changed", "host key for")
AUTH = ("permission denied", "too many authentication failures", "authentication failed", "no mutual signature")
NOISE = ("warning: permanently added", "** ", "pseudo-terminal")
CONTROL_BASE = "/tmp"  # short, for the ControlPath socket
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
            check_option(key, value)
        if self.strict == "accept-new":
            own = [k for k, _ in self.options if k.lower() in KNOWN_HOSTS_FILES]
            if own:
                raise CxrError(f"--ssh-option StrictHostKeyChecking=accept-new with {own[0]}: a known-hosts file of "
                               "its own would accept any key; use one or the other")
        if self.config is not None and not self.config.exists():
            raise CxrError(f"--ssh-config {self.config}: file not found")

    @property
    def strict(self) -> str:
        asked = [v.lower() for k, v in self.options if k.lower() == "stricthostkeychecking"]
        return {"true": "yes"}.get(asked[0], asked[0]) if asked else "yes"


def check_option(key: str, value: str) -> None:
    """CxrError for an --ssh-option that could switch host key checking off or take over cxredge's own."""
    item, k, v = f"{key}={value}", key.lower(), value.strip().lower()
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", key) or any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise CxrError(f"--ssh-option {item!r}: expected one KEY=VALUE with a one-word KEY and no control characters")
    if k in FORCED:
        raise CxrError(f"--ssh-option {item}: cxredge sets {key} itself")
    if k == "stricthostkeychecking" and v not in STRICT_OK:
        raise CxrError(f"--ssh-option {item}: host key checking stays on (yes or accept-new)")
    if k in NEVER:
        raise CxrError(f"--ssh-option {item}: refused, {NEVER[k]} (host keys are checked against known_hosts)")
    if k in KNOWN_HOSTS_FILES and not all(real_file_or_new(f) for f in value.split()):
        raise CxrError(f"--ssh-option {item}: a known-hosts file must be a real file (not /dev/null or none)")


def real_file_or_new(name: str) -> bool:
    """A known-hosts file: a regular file, or one still to be made. /dev/null, 'none', a device: no."""
    if name.lower() == "none":
        return False
    p = Path(os.path.expanduser(name))
    try:
        return p.resolve().is_file() or not p.exists()
    except OSError:
        return False


def parse_options(items: list[str]) -> tuple[tuple[str, str], ...]:
    """--ssh-option values as ssh -o reads them: 'KEY=VALUE', 'KEY VALUE' or 'KEY = VALUE'."""
    out = []
    for item in items:
        m = OPTION.fullmatch(item)
        if not m:
            raise CxrError(f"--ssh-option {item!r}: expected KEY=VALUE (as ssh -o takes it)")
        out.append((m.group(1), m.group(2)))
    return tuple(out)


def effective_problem(config: dict[str, list[str]], strict: str) -> str | None:
    """What in `ssh -G`'s effective configuration would let an unchecked host key through, or None."""
    effective = config.get("stricthostkeychecking", ["true"])[0].lower()
    if effective not in STRICT_OK:
        return f"StrictHostKeyChecking {effective}"
    if config.get("knownhostscommand", ["none"])[0].lower() != "none":
        return f"KnownHostsCommand {' '.join(config['knownhostscommand'])} is set ({NEVER['knownhostscommand']})"
    if strict == "accept-new":
        for key in sorted(KNOWN_HOSTS_FILES):
            bad = [f for f in config.get(key, []) if not real_file_or_new(f)]
            if bad:
                return f"{key} {bad[0]} with StrictHostKeyChecking=accept-new would accept any host key"
    return None


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
        # a short folder: a unix socket path must stay under ~104 bytes (macOS's TMPDIR is long); a killed
        # run's folder (its pid gone, an hour old) is removed by the next one (cxredge/io.py remove_stale)
        base = CONTROL_BASE if os.path.isdir(CONTROL_BASE) else tempfile.gettempdir()
        remove_stale(Path(base), r"cxr-ssh-\d+-" + TMP_CHARS)
        self.control = Path(tempfile.mkdtemp(prefix=f"cxr-ssh-{os.getpid()}-", dir=base))

    def __enter__(self) -> "Connection":
        self.check_config()
        return self

    def check_config(self) -> None:
        """Refuse before connecting when ~/.ssh/config or --ssh-config switches host key checking off."""
        try:
            res = subprocess.run(self.base() + ["-G", "--", self.target.destination], capture_output=True, timeout=15)
        except (OSError, subprocess.TimeoutExpired):
            return  # an ssh without -G (older than 6.8): the option checks above still hold
        if res.returncode != 0:
            return
        config: dict[str, list[str]] = {}
        for line in res.stdout.decode("utf-8", "replace").splitlines():
            key, _, value = line.partition(" ")
            config.setdefault(key.lower(), []).extend(value.split())
        problem = effective_problem(config, self.settings.strict)
        if problem:
            where = f"--ssh-config {self.settings.config}" if self.settings.config else "your ssh config (ssh -G)"
            raise CxrError(f"{self.target}: {where}: {problem}; host key checking stays on")

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
