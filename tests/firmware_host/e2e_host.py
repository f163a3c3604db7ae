"""End-to-end check of a deployed host: a torch-free venv with ``ouvir[host]``, a virtual microphone, a real
WebSocket client, compared with ``ouvir transcribe`` on the same audio.

    python -m tests.firmware_host.e2e_host BUNDLE WAV [--venv DIR] [--reference-python PY]

1. ``make_host_venv``: ``python -m venv DIR`` + ``pip install REPO[host]`` (non-editable), then checks that
   ``import torch`` fails there.
2. ``run_on_virtual_mic``: starts ``DIR/bin/ouvir-host BUNDLE --input mic --serve 127.0.0.1:0`` against a private
   PulseAudio (tests/vmic.py), connects a client, plays WAV into the microphone, waits for the last final,
   sends SIGTERM; records the finals, the host's exit code, boot time (start -> serving), time from
   playback start to the first partial, and the host's peak RSS.
3. compares the finals' text with ``ouvir transcribe --model BUNDLE WAV --json`` (word edit distance).
Prints one JSON report; exits 1 when the host failed or torch was importable in the venv.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from websockets.sync.client import connect

from tests.conftest import REPO
from tests.vmic import VirtualMic

SERVING = re.compile(r"serving captions on ws://127\.0\.0\.1:(\d+)/")


@dataclass
class HostRun:
    exit_code: int | None = None
    boot_s: float | None = None  # process start -> capturing (bundle verified and loaded, mic open)
    first_partial_s: float | None = None  # playback start -> first partial at the client
    peak_rss_mib: float | None = None
    finals: list[str] = field(default_factory=list)
    health: list[str] = field(default_factory=list)
    stderr_tail: str = ""


def make_host_venv(venv: Path, repo: Path = REPO) -> Path:
    """A fresh venv with ``ouvir[host]`` installed from ``repo``; returns its python. Raises if torch imports."""
    if not (venv / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", f"{repo}[host]"], check=True)
    python = venv / "bin" / "python"
    probe = subprocess.run([str(python), "-c", "import torch"], capture_output=True, cwd="/")
    if probe.returncode == 0:
        raise RuntimeError(f"torch is importable in {venv}: ouvir[host] must not pull it in")
    return python


def _peak_rss_mib(pid: int) -> float | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    m = re.search(r"VmHWM:\s+(\d+) kB", text)
    return int(m.group(1)) / 1024 if m else None


def run_on_virtual_mic(host_cmd: list[str], wav: Path, rate: int = 48000, settle_s: float = 3.0,
                       cwd: Path = Path("/")) -> HostRun:
    """Run ``host_cmd`` (an ouvir-host command line without --input/--serve) on a virtual mic playing ``wav``."""
    run = HostRun()
    with VirtualMic(rate) as mic:
        t0 = time.monotonic()
        proc = subprocess.Popen([*host_cmd, "--input", "mic", "--serve", "127.0.0.1:0"], cwd=cwd,
                                env=mic.env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        lines: list[str] = []
        port: list[int] = []
        serving = threading.Event()

        def read_stderr() -> None:
            for line in proc.stderr:
                lines.append(line)
                if (m := SERVING.search(line)) and not port:
                    port.append(int(m.group(1)))
                    serving.set()
            serving.set()

        reader = threading.Thread(target=read_stderr, daemon=True)
        reader.start()
        try:
            if not serving.wait(120) or not port:
                raise RuntimeError("the host did not start serving:\n" + "".join(lines[-20:]))
            with connect(f"ws://127.0.0.1:{port[0]}/") as ws:
                while (msg := json.loads(ws.recv(timeout=60))).get("type") != "health" or \
                        msg["input"]["state"] != "running":
                    pass
                run.boot_s = time.monotonic() - t0
                played_at = time.monotonic()
                player = threading.Thread(target=mic.play, args=(wav,))
                player.start()
                deadline = None
                while deadline is None or time.monotonic() < deadline:
                    try:
                        msg = json.loads(ws.recv(timeout=0.5))
                    except TimeoutError:
                        msg = {}
                    if msg.get("type") == "partial" and run.first_partial_s is None:
                        run.first_partial_s = time.monotonic() - played_at
                    elif msg.get("type") == "final":
                        run.finals.append(msg["text"])
                    elif msg.get("type") == "health":
                        run.health.append(msg["status"])
                    if deadline is None and not player.is_alive():
                        deadline = time.monotonic() + settle_s  # endpoint silence, then stop
                run.peak_rss_mib = _peak_rss_mib(proc.pid)
                proc.send_signal(signal.SIGTERM)
                for frame in ws:  # the flushed final, metrics, bye
                    msg = json.loads(frame)
                    if msg["type"] == "final":
                        run.finals.append(msg["text"])
            run.exit_code = proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            reader.join(5)
            run.stderr_tail = "".join(lines[-10:])
    return run


def reference_text(python: Path, bundle: Path, wav: Path) -> str:
    """``ouvir transcribe --json``'s finals, joined."""
    out = subprocess.run([str(python), "-m", "ouvir.engine.cli", "transcribe", str(wav), "--model", str(bundle),
                          "--json"], capture_output=True, text=True, check=True, cwd=REPO).stdout
    return " ".join(r["text"] for r in map(json.loads, out.splitlines()) if r["type"] == "final")


def word_errors(ref: str, hyp: str) -> int:
    """Word-level Levenshtein distance."""
    a, b = ref.split(), hyp.split()
    row = list(range(len(b) + 1))
    for i, wa in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, wb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (wa != wb))
    return row[-1]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle", type=Path)
    p.add_argument("wav", type=Path)
    p.add_argument("--venv", type=Path, default=Path("/tmp/ouvir-host-venv"))
    p.add_argument("--reference-python", type=Path, default=Path(sys.executable),
                   help="a python with ouvir installed for `ouvir transcribe` (default: this one)")
    args = p.parse_args()
    python = make_host_venv(args.venv)
    host = [str(python.parent / "ouvir-host"), str(args.bundle.resolve()), "--report-interval", "1"]
    run = run_on_virtual_mic(host, args.wav.resolve())
    ref = reference_text(args.reference_python, args.bundle.resolve(), args.wav.resolve())
    hyp = " ".join(run.finals)
    report = {**asdict(run), "reference": ref, "word_errors": word_errors(ref, hyp),
              "reference_words": len(ref.split())}
    print(json.dumps(report, indent=1))
    return 0 if run.exit_code == 0 and run.finals else 1


if __name__ == "__main__":
    sys.exit(main())
