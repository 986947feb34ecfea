"""A throw-away OpenSSH server on 127.0.0.1, for the `bench --remote` tests and benchmarks/bench/devices_loopback.py.

Everything lives in one folder: a fresh ed25519 host key, a user key (authorised) and a stranger key
(not authorised), authorized_keys, a known_hosts line for the host key, the sshd_config, and an ssh
client config (`--ssh-config`) naming the user key and that known_hosts, so neither ~/.ssh nor
/etc/ssh is read or written. sshd runs in the foreground (`sshd -D -e -f CONFIG`) on a free port.
As root (CI), sshd needs its privilege-separation folder /run/sshd; UsePAM is off so no PAM setup
is needed; StrictModes is off because the temporary folder is not a home folder.
"""
from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


def find_sshd() -> str | None:
    for cand in (shutil.which("sshd"), "/usr/sbin/sshd", "/usr/local/sbin/sshd"):
        if cand and os.access(cand, os.X_OK):
            return cand
    return None


def missing() -> str | None:
    """Why a loopback sshd cannot be had here, or None."""
    if find_sshd() is None:
        return "no sshd here (apt-get install openssh-server; .ci/run installs it)"
    for tool in ("ssh", "ssh-keygen"):
        if shutil.which(tool) is None:
            return f"no {tool} here (apt-get install openssh-client)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path)], check=True)
    return path.with_suffix(".pub").read_text().strip()


@dataclass
class Loopback:
    folder: Path
    port: int
    user: str
    proc: subprocess.Popen

    @property
    def target(self) -> str:
        return f"{self.user}@127.0.0.1:{self.port}"

    @property
    def client_config(self) -> Path:
        return self.folder / "ssh_config"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def log(self) -> str:
        return (self.folder / "sshd.log").read_text(errors="replace")


def client_config(folder: Path, key: Path, name: str = "ssh_config") -> Path:
    """An ssh -F file naming only `key` (the user key, or the stranger key for an auth refusal)."""
    path = folder / name
    path.write_text(f"Host *\n  IdentityFile {key}\n  IdentitiesOnly yes\n  IdentityAgent none\n"
                    f"  UserKnownHostsFile {folder / 'known_hosts'}\n  GlobalKnownHostsFile /dev/null\n")
    return path


def start(folder: Path, timeout: float = 15.0) -> Loopback:
    """Start sshd on 127.0.0.1:<free port> with throw-away keys in `folder`; RuntimeError if it does not come up."""
    folder.mkdir(parents=True, exist_ok=True)
    host_pub = keygen(folder / "host_ed25519")
    (folder / "authorized_keys").write_text(keygen(folder / "user_ed25519") + "\n")
    keygen(folder / "stranger_ed25519")
    port = free_port()
    (folder / "known_hosts").write_text(f"[127.0.0.1]:{port} {' '.join(host_pub.split()[:2])}\n")
    client_config(folder, folder / "user_ed25519")
    client_config(folder, folder / "stranger_ed25519", "ssh_config_stranger")
    (folder / "sshd_config").write_text("\n".join([
        f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {folder / 'host_ed25519'}",
        f"PidFile {folder / 'sshd.pid'}", f"AuthorizedKeysFile {folder / 'authorized_keys'}",
        "StrictModes no", "UsePAM no", "PasswordAuthentication no", "KbdInteractiveAuthentication no",
        "PubkeyAuthentication yes", "PermitRootLogin prohibit-password", "MaxStartups 50", "LogLevel VERBOSE",
        "AcceptEnv TMPDIR", ""]))
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    log = open(folder / "sshd.log", "w")
    proc = subprocess.Popen([find_sshd(), "-D", "-e", "-f", str(folder / "sshd_config")], stdout=log,
                            stderr=subprocess.STDOUT)
    lb = Loopback(folder, port, getpass.getuser(), proc)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sshd exited {proc.returncode}: {lb.log()[-800:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return lb
        except OSError:
            time.sleep(0.1)
    lb.stop()
    raise RuntimeError(f"sshd did not listen on 127.0.0.1:{port} within {timeout:.0f} s: {lb.log()[-800:]}")
