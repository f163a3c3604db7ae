"""``ouvir bench-host BUNDLE``: what a device sees from ouvir-host serving a bundle.

ouvir-host runs as its own process with torch made unimportable (as on a device without it), reading the
audio from stdin at real-time pace, as from a microphone. Measured: the time from process start to the
first partial caption, to the first final, the peak RSS (VmHWM) while serving, and the host's own metrics.
Writes ``host.json`` to ``--out`` and prints it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

BLOCK_S = 0.1  # audio written per pacing step


def add_bench_host_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("bench-host", help="ouvir-host on a bundle: start to first partial, peak RSS")
    p.add_argument("bundle", type=Path, help="an ONNX bundle directory")
    p.add_argument("--audio", type=Path, default=None, help="speech file (default: 8 s of speech shipped with ouvir)")
    p.add_argument("--lookahead-ms", type=int, default=None, help="default: the bundle's first")
    p.add_argument("--out", type=Path, default=Path("bench"), help="report folder (default: bench/)")
    p.set_defaults(func=run_bench_host)
    return p


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident set (VmHWM) so far, MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for process {pid}")


def measure_host(bundle: Path, pcm: np.ndarray, lookahead_ms: int | None = None) -> dict[str, Any]:
    """Serve ``pcm`` ((N,) int16, 16 kHz) through ouvir-host on ``bundle`` at real-time pace."""
    with tempfile.TemporaryDirectory(prefix="ouvir-no-torch-") as shim:
        Path(shim, "sitecustomize.py").write_text('import sys\nsys.modules["torch"] = None  # unimportable\n')
        cmd = [sys.executable, "-m", "ouvir.firmware_host.cli", str(bundle), "--input", "stdin", "--jsonl"]
        if lookahead_ms is not None:
            cmd += ["--lookahead-ms", str(lookahead_ms)]
        start = time.monotonic()
        proc = subprocess.Popen(cmd, env={"PYTHONPATH": shim, "PATH": "/usr/bin:/bin"}, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        seen: dict[str, float] = {}
        messages: list[dict[str, Any]] = []

        def read() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                message = json.loads(line)
                messages.append(message)
                seen.setdefault(message["type"], time.monotonic() - start)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        block = int(16000 * BLOCK_S)
        rss = 0.0
        assert proc.stdin is not None
        for i in range(0, len(pcm), block):
            proc.stdin.write(pcm[i : i + block].astype("<i2").tobytes())
            proc.stdin.flush()
            rss = max(rss, peak_rss_mib(proc.pid))
            time.sleep(max(0.0, start + (i + block) / 16000 - time.monotonic()))
        proc.stdin.close()
        err = proc.stderr.read().decode() if proc.stderr else ""
        if proc.wait(timeout=60) != 0:
            raise RuntimeError(f"ouvir-host exited with {proc.returncode}: {err.strip()[-500:]}")
        reader.join(timeout=10)
    finals = [m["text"] for m in messages if m["type"] == "final"]
    metrics = [m for m in messages if m["type"] == "metrics"]
    return {
        "bundle": str(bundle), "audio_s": len(pcm) / 16000, "lookahead_ms": lookahead_ms,
        "start_to_first_partial_s": seen.get("partial"), "start_to_first_final_s": seen.get("final"),
        "peak_rss_mib": round(rss, 1), "finals": finals, "metrics": metrics[-1] if metrics else None,
    }  # fmt: skip


def run_bench_host(args: argparse.Namespace) -> int:
    from ouvir.engine.bench.audio import read_audio
    from ouvir.engine.bench.cli import default_audio
    from ouvir.engine.bench.machine import machine_info
    from ouvir.engine.bench.paths import portable_paths

    samples, _ = read_audio(args.audio or default_audio())  # (N,) float32 at 16 kHz
    pcm = np.clip(np.round(samples * 32768), -32768, 32767).astype(np.int16)
    result = portable_paths({"machine": machine_info(1), "audio": str(args.audio or default_audio()),
                             **measure_host(args.bundle, pcm, args.lookahead_ms)})
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "host.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0
