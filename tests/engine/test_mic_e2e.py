"""End to end through a real (virtual) microphone: PulseAudio null sink -> ALSA pulse plugin -> PortAudio ->
sounddevice / pyaudio -> ``ouvir listen``. The captured audio must match what was played, and the live transcript
must equal ``ouvir transcribe`` of the audio it captured.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from tests import vmic
from tests.conftest import NEMO_FIXTURES

pytestmark = [pytest.mark.mic, pytest.mark.skipif(not vmic.available(), reason="PulseAudio tools not installed")]

OUVIR = [str(Path(sys.executable).with_name("ouvir"))]  # the installed console script


def _final_text(stdout: str) -> str:
    finals = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    return " ".join(e["text"] for e in finals if e["type"] == "final").strip()


def _aligned_ncc(source: np.ndarray, captured: np.ndarray) -> float:
    """Normalized cross-correlation of ``source`` and ``captured`` at their best alignment (either may lead)."""
    n = len(source) + len(captured) - 1
    size = 1 << int(np.ceil(np.log2(n)))
    corr = np.fft.irfft(np.fft.rfft(captured, size) * np.conj(np.fft.rfft(source, size)), size)
    lag = int(np.argmax(corr))
    lag = lag - size if lag >= len(captured) else lag  # negative: the capture started after the source
    a = captured[max(lag, 0):]
    b = source[max(-lag, 0):]
    m = min(len(a), len(b))
    a, b = a[:m], b[:m]
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


@pytest.mark.parametrize("backend", ["sounddevice", "pyaudio"])
@pytest.mark.parametrize("rate", [16000, 48000])
def test_listen_captures_and_transcribes(tmp_path: Path, backend: str, rate: int) -> None:
    model = NEMO_FIXTURES / "hybrid_multi.nemo"
    speech = vmic.speech_wav(tmp_path)
    saved = tmp_path / "captured.wav"
    with vmic.VirtualMic(rate) as mic:
        proc = subprocess.Popen(
            [*OUVIR, "listen", "--model", str(model), "--input-backend", backend, "--device-rate", str(rate),
             "--json", "--save-audio", str(saved)],
            env=mic.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        try:
            deadline = time.monotonic() + 60
            ready = ""
            while "listening" not in ready:  # the CLI says so on stderr once capture runs
                assert proc.poll() is None, proc.stderr.read()
                assert time.monotonic() < deadline, "ouvir listen did not start capturing"
                ready = proc.stderr.readline()
            mic.play(speech)
            time.sleep(0.5)
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0, err

    source, sr = sf.read(speech, dtype="float32")
    source = soxr.resample(source, sr, 16000)
    captured, cap_sr = sf.read(saved, dtype="float32")
    assert cap_sr == 16000
    assert len(captured) >= len(source) - 16000  # the leading silence may start before capture
    assert _aligned_ncc(source, captured) >= 0.97

    live = _final_text(out)
    offline = subprocess.run([*OUVIR, "transcribe", str(saved), "--model", str(model), "--json"],
                             capture_output=True, text=True, check=True)
    assert live, "no final result from ouvir listen"
    assert live == _final_text(offline.stdout)
