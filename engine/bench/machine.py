"""Where numbers came from (CPU model, cores, load, package versions) and how much memory a process holds."""

from __future__ import annotations

import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("numpy", "onnxruntime", "onnxruntime-gpu", "executorch", "torch", "sherpa-onnx")
_CPU_KEYS = ("model name", "Model", "Hardware", "cpu model")  # x86, Raspberry Pi, older ARM, MIPS


def cpu_model(cpuinfo: str | None = None) -> str:
    """The CPU's name from /proc/cpuinfo (``platform.processor()`` elsewhere)."""
    if cpuinfo is None:
        path = Path("/proc/cpuinfo")
        cpuinfo = path.read_text(errors="replace") if path.is_file() else ""
    for key in _CPU_KEYS:
        for line in cpuinfo.splitlines():
            name, sep, value = line.partition(":")
            if sep and name.strip() == key and value.strip():
                return value.strip()
    return platform.processor() or platform.machine()


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def memory_total_bytes() -> int | None:
    path = Path("/proc/meminfo")
    if not path.is_file():
        return None
    for line in path.read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return None


def load_average() -> list[float] | None:
    """1, 5, 15-minute load averages: a busy machine shows here (runs on a shared machine are noisy)."""
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def gpus() -> list[str]:
    """The NVIDIA cards ``nvidia-smi`` lists (name, memory, driver); none without it."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    query = ["--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"]
    try:
        proc = subprocess.run([exe, *query], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in proc.stdout.splitlines() if line.strip()] if proc.returncode == 0 else []


def machine_info(threads: int, device: str = "cpu") -> dict[str, Any]:
    return {
        "device": device,
        "gpus": gpus(),
        "cpu": cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": usable_cores(),
        "threads": threads,
        "memory_bytes": memory_total_bytes(),
        "load_average": load_average(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "packages": package_versions(),
    }


def current_rss_bytes() -> int:
    """Resident set size now (/proc/self/statm; the peak where /proc is missing)."""
    path = Path("/proc/self/statm")
    if path.is_file():
        return int(path.read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    return peak_rss_bytes()


def peak_rss_bytes() -> int:
    """Peak resident set size of this process image so far: VmHWM, which exec resets. (getrusage's
    ru_maxrss survives exec on Linux, so a worker would inherit its parent's peak.)"""
    path = Path("/proc/self/status")
    if path.is_file():
        for line in path.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB on Linux


def cpu_seconds() -> float:
    """User + system CPU time of this process, all threads (high resolution). Next to wall time it shows
    both the runtime's parallelism (CPU > wall) and other work stealing the cores (CPU << wall x threads)."""
    return time.process_time()
