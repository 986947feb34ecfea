"""Issue 22 cause 9: --ssh-option and ssh config files cannot switch host key checking off. The policy
(docs/security.md): StrictHostKeyChecking yes/ask/accept-new only; KnownHostsCommand, Include, Match,
Host refused; a known-hosts file must be a real file, and accept-new may not bring its own; keys are
one word, case-insensitive, in ssh's KEY=VALUE / KEY VALUE forms; the effective configuration (ssh -G)
is checked before the first connection. The refusals failed on the main before the fix."""
from __future__ import annotations

import shutil

import pytest

from cxredge.errors import CxrError
from cxredge.remote.ssh import Connection, SshSettings, Target, effective_problem, parse_options

BYPASSES = [
    ["UserKnownHostsFile=/dev/null", "StrictHostKeyChecking=accept-new"],  # the example
    ["userknownhostsfile /dev/null"],  # KEY VALUE form, any case
    ["GLOBALKNOWNHOSTSFILE = /dev/null"],
    ["UserKnownHostsFile=none"],
    ["UserKnownHostsFile=~/.ssh/known_hosts /dev/null"],  # several files, one of them /dev/null
    ["KnownHostsCommand=/bin/sh -c 'ssh-keyscan %H'"],  # a command vouching for any key
    ["knownhostscommand /bin/true"],
    ["StrictHostKeyChecking=no"], ["stricthostkeychecking off"], ["StrictHostKeyChecking=FALSE"],
    ["StrictHostKeyChecking=accept-new", "UserKnownHostsFile=/tmp/fresh_known_hosts"],  # TOFU on every run
    ["Include=/tmp/evil_config"], ["Match=all"], ["Host=*"],
    ["-oUserKnownHostsFile=/dev/null"],  # -o smuggled into the key
    ['"UserKnownHostsFile"=/dev/null'],  # ssh unquotes keywords: not one word, refused
    ["IdentityFile=/k\nUserKnownHostsFile /dev/null"],  # a second line smuggled into the value
    ["BatchMode=no"], ["controlpath=/tmp/x"],
]


@pytest.mark.parametrize("items", BYPASSES, ids=lambda items: " + ".join(items))
def test_options_that_switch_checking_off_are_refused(items):
    with pytest.raises(CxrError, match="--ssh-option"):
        SshSettings(parse_options(items))


@pytest.mark.parametrize("items,expected", [
    (["IdentityFile=~/.ssh/pi_ed25519"], (("IdentityFile", "~/.ssh/pi_ed25519"),)),
    (["SetEnv TMPDIR=/var/tmp"], (("SetEnv", "TMPDIR=/var/tmp"),)),
    (["ProxyJump = bastion"], (("ProxyJump", "bastion"),)),
    (["StrictHostKeyChecking=accept-new"], (("StrictHostKeyChecking", "accept-new"),)),
    (["UserKnownHostsFile=/tmp/project_known_hosts"], (("UserKnownHostsFile", "/tmp/project_known_hosts"),)),
])
def test_ordinary_options_pass(items, expected):
    settings = SshSettings(parse_options(items))
    assert settings.options == expected


def test_strict_value_is_case_insensitive():
    assert SshSettings(parse_options(["stricthostkeychecking ACCEPT-NEW"])).strict == "accept-new"
    assert SshSettings(parse_options(["StrictHostKeyChecking=true"])).strict == "yes"


def test_effective_configuration_rules():
    ok = {"stricthostkeychecking": ["accept-new"], "userknownhostsfile": ["~/.ssh/known_hosts"],
          "globalknownhostsfile": ["/etc/ssh/ssh_known_hosts"]}
    assert effective_problem(ok, "accept-new") is None
    assert "accept any host key" in effective_problem({**ok, "userknownhostsfile": ["/dev/null"]}, "accept-new")
    assert effective_problem({**ok, "globalknownhostsfile": ["/dev/null"]}, "yes") is None  # strict: no key is known
    assert "KnownHostsCommand" in effective_problem({**ok, "knownhostscommand": ["/bin/true"]}, "yes")
    assert "StrictHostKeyChecking false" in effective_problem({**ok, "stricthostkeychecking": ["false"]}, "yes")


@pytest.mark.skipif(shutil.which("ssh") is None, reason="no ssh client")
@pytest.mark.parametrize("config,strict", [
    ("Host *\n  UserKnownHostsFile /dev/null\n", "accept-new"),
    ("Host *\n  KnownHostsCommand /bin/echo %H\n", "yes"),
])
def test_a_config_file_that_switches_checking_off_is_refused_before_connecting(tmp_path, config, strict):
    cfg = tmp_path / "ssh_config"
    cfg.write_text(config)
    settings = SshSettings((("StrictHostKeyChecking", strict),), cfg)
    with pytest.raises(CxrError, match=r"u@example\.invalid: --ssh-config .*ssh_config: .*host key checking stays on"):
        with Connection(Target("example.invalid", "u"), settings):
            pass


@pytest.mark.skipif(shutil.which("ssh") is None, reason="no ssh client")
def test_a_plain_config_passes_the_check(tmp_path):
    cfg = tmp_path / "ssh_config"
    cfg.write_text(f"Host *\n  UserKnownHostsFile {tmp_path / 'known_hosts'}\n  GlobalKnownHostsFile /dev/null\n")
    with Connection(Target("example.invalid", "u"), SshSettings((), cfg)) as conn:
        assert conn.target.host == "example.invalid"


def test_a_killed_runs_control_folder_is_removed_by_the_next_connection(tmp_path, monkeypatch):
    """Issue 22 cause 18's sibling: the ssh ControlPath folder in /tmp of a SIGKILLed run."""
    import os
    import subprocess
    import sys
    import time

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    monkeypatch.setattr("cxredge.remote.ssh.shutil.which", lambda name: "/usr/bin/ssh")
    stale = tmp_path / f"cxr-ssh-{pid}-abcd1234"
    live = tmp_path / f"cxr-ssh-{os.getpid()}-abcd1234"
    for d in (stale, live):
        d.mkdir()
        t = time.time() - 7200
        os.utime(d, (t, t))
    monkeypatch.setattr("cxredge.remote.ssh.CONTROL_BASE", str(tmp_path))
    conn = Connection(Target("example.invalid", "u"), SshSettings())
    assert conn.control.parent == tmp_path and conn.control.name.startswith(f"cxr-ssh-{os.getpid()}-")
    assert not stale.exists() and live.is_dir()
    conn.close()
    assert not conn.control.exists()
