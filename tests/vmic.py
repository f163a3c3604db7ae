"""A private PulseAudio daemon with a null sink whose monitor is the default source: a real (virtual)
microphone for end-to-end capture tests (see ../shared/reference/virtual-microphone.md).

Children started with ``vmic.env`` talk to this daemon only; PortAudio sees it through ALSA's pulse plugin.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

SCRIPT = """load-module module-native-protocol-unix auth-anonymous=1
load-module module-null-sink sink_name=vspk rate={rate} channels=1
load-module module-remap-source source_name=vmic master=vspk.monitor
set-default-sink vspk
set-default-source vmic
"""


def available() -> bool:
    return all(shutil.which(t) for t in ("pulseaudio", "pactl", "paplay", "pacat"))


def speech_wav(folder: Path, text: str = "the quick brown fox jumps over the lazy dog") -> Path:
    """``text`` spoken by espeak-ng with 0.5 s of silence around it: ``folder/speech.wav``, 16-bit, 22.05 kHz."""
    raw, wav = folder / "raw.wav", folder / "speech.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(raw), text], check=True)
    audio, rate = sf.read(raw, dtype="int16")
    pad = np.zeros(rate // 2, np.int16)
    sf.write(wav, np.concatenate([pad, audio, pad]), rate, subtype="PCM_16")
    return wav


class VirtualMic:
    """Context manager: ``with VirtualMic(48000) as mic: subprocess.run(..., env=mic.env)``."""

    def __init__(self, rate: int = 48000) -> None:
        self.rate = rate
        self._tmp = Path(tempfile.mkdtemp(prefix="ouvir-pulse-"))
        self._procs: list[subprocess.Popen] = []
        self._zeros = open("/dev/zero", "rb")  # noqa: SIM115 - feeds the keep-alive stream until __exit__
        runtime = self._tmp / "run"
        runtime.mkdir(mode=0o700)
        self.env = {
            **os.environ,
            "HOME": str(self._tmp),
            "XDG_RUNTIME_DIR": str(runtime),
            "XDG_CONFIG_HOME": str(self._tmp / "config"),
            "PULSE_SERVER": f"unix:{runtime}/pulse/native",
        }

    def __enter__(self) -> VirtualMic:
        script = self._tmp / "vmic.pa"
        script.write_text(SCRIPT.format(rate=self.rate))
        self._spawn(["pulseaudio", "--daemonize=no", "-n", "--exit-idle-time=-1", "--use-pid-file=no",
                     "--disallow-exit", "-F", str(script)])
        deadline = time.monotonic() + 10
        while subprocess.run(["pactl", "info"], env=self.env, capture_output=True).returncode != 0:
            if time.monotonic() > deadline:
                self.__exit__(None, None, None)
                raise RuntimeError("the private PulseAudio daemon did not come up within 10 s")
            time.sleep(0.05)
        # Keep-alive: without a running stream the idle null sink delivers audio in 1-2 s bursts.
        self._spawn(["pacat", "-p", "-d", "vspk", "--latency-msec=20", "--format=s16le", f"--rate={self.rate}",
                     "--channels=1"], stdin=self._zeros)
        return self

    def _spawn(self, cmd: list[str], stdin=None) -> subprocess.Popen:
        proc = subprocess.Popen(cmd, env=self.env, stdin=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._procs.append(proc)
        return proc

    def play(self, wav: Path) -> None:
        """Play ``wav`` into the microphone and wait until it has been played."""
        subprocess.run(["paplay", "--device=vspk", str(wav)], env=self.env, check=True, timeout=120)

    def __exit__(self, *exc: object) -> None:
        for proc in reversed(self._procs):
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._zeros.close()
        shutil.rmtree(self._tmp, ignore_errors=True)
