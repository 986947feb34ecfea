"""Facts about the machine a benchmark ran on. TF-free, standard library only.

machine, cpu model, cores, os, python, runtime name + version, and on a Raspberry Pi (or any Linux
board that exposes them) the CPU temperature from /sys/class/thermal and the throttling state from
`vcgencmd get_throttled`, and the cpufreq governor. Anything that cannot be read is left out or null, never guessed.
"""
from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path

THERMAL = Path("/sys/class/thermal")
CPUFREQ = Path("/sys/devices/system/cpu/cpu0/cpufreq")

# Bits of `vcgencmd get_throttled` (Raspberry Pi firmware documentation).
THROTTLE_BITS = {
    0: "under-voltage now", 1: "ARM frequency capped now", 2: "throttled now", 3: "soft temperature limit now",
    16: "under-voltage has occurred", 17: "ARM frequency capping has occurred",
    18: "throttling has occurred", 19: "soft temperature limit has occurred",
}


def cpu_model() -> str:
    """The CPU's name from /proc/cpuinfo (x86 'model name', ARM 'Model'/'Hardware'), else platform."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return platform.processor() or platform.machine()
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and value.strip():
            fields.setdefault(key.strip(), value.strip())
    for key in ("model name", "Model", "Hardware", "cpu model", "Processor"):
        if key in fields:
            return fields[key]
    if "CPU part" in fields:
        return f"ARM CPU part {fields['CPU part']}"
    return platform.processor() or platform.machine()


def os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return f"{platform.system()} {platform.release()}"


def temperatures_c() -> dict[str, float]:
    """{zone type: degrees C} for every readable thermal zone."""
    out: dict[str, float] = {}
    if not THERMAL.is_dir():
        return out
    for zone in sorted(THERMAL.glob("thermal_zone*")):
        try:
            milli = int((zone / "temp").read_text().strip())
            kind = (zone / "type").read_text().strip() if (zone / "type").is_file() else zone.name
        except (OSError, ValueError):
            continue
        out[kind if kind not in out else f"{kind}_{zone.name}"] = round(milli / 1000.0, 1)
    return out


def throttling() -> dict | None:
    """`vcgencmd get_throttled` decoded, or None where there is no vcgencmd."""
    exe = shutil.which("vcgencmd")
    if not exe:
        return None
    try:
        res = subprocess.run([exe, "get_throttled"], capture_output=True, text=True, timeout=5)
        raw = res.stdout.strip().split("=", 1)[-1]
        value = int(raw, 16)
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    return {"raw": hex(value), "flags": [name for bit, name in THROTTLE_BITS.items() if value >> bit & 1]}


def cpu_freq_mhz() -> dict | None:
    vals = {}
    for name in ("scaling_cur_freq", "scaling_max_freq"):
        try:
            vals[name.replace("scaling_", "").replace("_freq", "")] = int((CPUFREQ / name).read_text()) // 1000
        except (OSError, ValueError):
            continue
    return vals or None


def cpu_governor() -> str | None:
    """The cpufreq governor of cpu0 (`performance` gives stable timings; `ondemand`/`schedutil` ramp)."""
    try:
        return (CPUFREQ / "scaling_governor").read_text().strip() or None
    except OSError:
        return None


def thermal_state() -> dict:
    """What can change between two rows of a benchmark: temperatures, throttling, clock, governor."""
    return {"temperature_c": temperatures_c() or None, "throttled": throttling(), "cpu_mhz": cpu_freq_mhz(),
            "cpu_governor": cpu_governor()}


def device_info(runtime=None) -> dict:
    """The `device` block of bench.json."""
    from cxredge import __version__

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    info = {
        "machine": platform.machine(),
        "hostname": platform.node(),
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": usable,
        "os": os_name(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "cxredge": __version__,
        "runtime": runtime.name if runtime else None,
        "runtime_version": runtime.version if runtime else None,
        "numpy": _version("numpy"),
        "note": os.environ.get("CXREDGE_DEVICE_NOTE") or None,  # e.g. "qemu-user emulation": no sysfs tells
    }
    info.update(thermal_state())
    return info


def _version(dist: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None
