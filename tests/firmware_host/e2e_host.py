"""Helpers for running ``ouvir-host`` as a process: its stderr watched for the port it serves on, its peak RSS,
a torch-free virtual environment with ``ouvir[host]`` installed, and a run on the virtual microphone with a real
WebSocket client (test_host_e2e.py)."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from ouvir.engine.bench.host import peak_rss_mib
from tests.conftest import REPO
from tests.vmic import VirtualMic

SERVING = re.compile(r"serving captions on ws://127\.0\.0\.1:(\d+)/")
# What pip needs to build the project (pyproject.toml, setup.py's FOLDERS): everything else stays behind.
PROJECT_FILES = ("pyproject.toml", "setup.py", "README.md")
PROJECT_FOLDERS = ("pkg", "engine", "models", "export", "firmware_host")


class StderrWatch:
    """Drains a host process's stderr (text or bytes) on a thread into ``lines``; ``port`` waits for the log
    line 'serving captions on ws://127.0.0.1:PORT/'."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.lines: list[str] = []
        self._port: int | None = None
        self._serving = threading.Event()
        self._thread = threading.Thread(target=self._read, args=(proc.stderr,), daemon=True)
        self._thread.start()

    def _read(self, stream) -> None:
        for raw in stream:
            line = raw if isinstance(raw, str) else raw.decode(errors="replace")
            self.lines.append(line)
            if self._port is None and (m := SERVING.search(line)):
                self._port = int(m.group(1))
                self._serving.set()
        self._serving.set()  # stderr closed: the host exited without serving

    def port(self, timeout: float) -> int:
        assert self._serving.wait(timeout) and self._port is not None, "the host is not serving:\n" + self.text()
        return self._port

    def text(self) -> str:
        return "".join(self.lines)

    def join(self, timeout: float = 5) -> None:
        self._thread.join(timeout)


def make_host_venv(root: Path, repo: Path = REPO) -> Path:
    """``root/venv`` with ``ouvir[host]`` pip-installed (not editable) from a copy of ``repo``'s project files;
    returns its bin folder. The copy keeps setuptools' in-tree build/ folder (which would carry stale modules
    into the wheel) out of the repository. Asserts that torch cannot be imported there."""
    src, venv = root / "src", root / "venv"
    src.mkdir()
    for name in PROJECT_FILES:
        shutil.copy2(repo / name, src / name)
    for name in PROJECT_FOLDERS:
        shutil.copytree(repo / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for cmd in ([sys.executable, "-m", "venv", str(venv)],
                [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                 f"{src}[host]"]):
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=root)
        assert done.returncode == 0, f"{' '.join(cmd)}:\n{done.stdout}{done.stderr}"
    probe = subprocess.run([str(venv / "bin" / "python"), "-c", "import torch"], capture_output=True, cwd=root)
    assert probe.returncode != 0, f"torch is importable in {venv}: ouvir[host] must not pull it in"
    return venv / "bin"


@dataclass
class MicRun:
    """One host run on the virtual microphone; times are seconds since the host process started."""

    exit_code: int
    messages: list[tuple[float, dict[str, Any]]]  # everything the client received, with arrival times
    running_s: float  # health said the input runs: bundle verified and loaded, microphone open
    playback_s: float  # the speech started playing into the microphone
    stop_s: float  # SIGTERM was sent
    peak_rss_mib: float  # VmHWM just before SIGTERM
    stderr: str

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [m for _, m in self.messages if m["type"] == kind]

    def first_partial_s(self) -> float:
        return next(t for t, m in self.messages if m["type"] == "partial")


def run_on_virtual_mic(host_cmd: list[str], wav: Path, rate: int = 48000, settle_s: float = 0.3) -> MicRun:
    """Start ``host_cmd`` (an ouvir-host command line without --input/--serve) on a private virtual microphone
    at ``rate`` Hz, connect a WebSocket client, play ``wav`` once the input runs, wait ``settle_s``, send
    SIGTERM and collect the messages until the host closes the connection."""
    with VirtualMic(rate) as mic:
        t0 = time.monotonic()
        proc = subprocess.Popen([*host_cmd, "--input", "mic", "--serve", "127.0.0.1:0"], cwd="/", env=mic.env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        watch = StderrWatch(proc)
        messages: list[tuple[float, dict[str, Any]]] = []
        try:
            with connect(f"ws://127.0.0.1:{watch.port(60)}/") as ws:

                def receive(timeout: float) -> dict[str, Any]:
                    msg = json.loads(ws.recv(timeout=timeout))
                    messages.append((time.monotonic() - t0, msg))
                    return msg

                def receive_while(busy: Callable[[], bool]) -> None:
                    while busy():
                        with contextlib.suppress(TimeoutError):
                            receive(0.05)

                while not ((msg := receive(30))["type"] == "health" and msg["input"]["state"] == "running"):
                    pass
                running_s = messages[-1][0]
                player = threading.Thread(target=mic.play, args=(wav,))
                playback_s = time.monotonic() - t0
                player.start()
                receive_while(player.is_alive)
                settled = time.monotonic() + settle_s
                receive_while(lambda: time.monotonic() < settled)
                rss = peak_rss_mib(proc.pid)
                stop_s = time.monotonic() - t0
                proc.send_signal(signal.SIGTERM)
                with contextlib.suppress(ConnectionClosed):
                    while True:  # the flushed final, health, metrics, bye; then the host closes
                        receive(30)
            exit_code = proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            watch.join()
    return MicRun(exit_code, messages, running_s, playback_s, stop_s, rss, watch.text())
