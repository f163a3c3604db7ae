"""The streaming resampler keeps tones, rejects aliases and does not depend on block sizes."""

from __future__ import annotations

import numpy as np
import pytest

from ouvir.engine.audio.resample import StreamResampler


def _tone(freq: float, rate: int, seconds: float = 2.0, amp: float = 0.5) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * freq * np.arange(int(rate * seconds)) / rate)).astype(np.float32)


def _rms_db(x: np.ndarray) -> float:
    return 20 * np.log10(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def _resample(x: np.ndarray, rate: int, sizes=None, quality: str = "HQ") -> np.ndarray:
    r = StreamResampler(rate, 16000, quality)
    if sizes is None:
        return np.concatenate([r.process(x), r.flush()])
    outs, i, k = [], 0, 0
    while i < len(x):
        outs.append(r.process(x[i : i + sizes[k % len(sizes)]]))
        i, k = i + sizes[k % len(sizes)], k + 1
    outs.append(r.flush())
    return np.concatenate(outs)


@pytest.mark.parametrize("rate", [44100, 48000])
@pytest.mark.parametrize("quality", ["HQ", "VHQ"])
def test_tone_keeps_frequency_and_level(rate, quality):
    x = _tone(1000.0, rate)
    y = _resample(x, rate, quality=quality)
    assert y.dtype == np.float32 and len(y) == 32000
    steady = y[8000:24000]  # 1 s away from the ends: 1 Hz bins
    spectrum = np.abs(np.fft.rfft(steady * np.hanning(len(steady))))
    k = int(np.argmax(spectrum))
    # parabolic interpolation of the peak
    a, b, c = np.log(spectrum[k - 1 : k + 2])
    peak_hz = (k + 0.5 * (a - c) / (a - 2 * b + c)) * 16000 / len(steady)
    assert abs(peak_hz - 1000.0) <= 2.0
    assert abs(_rms_db(steady) - _rms_db(x[rate // 2 : rate + rate // 2])) <= 0.1


@pytest.mark.parametrize("rate", [44100, 48000])
def test_tone_above_the_new_nyquist_is_removed(rate):
    x = _tone(9000.0, rate)
    y = _resample(x, rate)
    assert _rms_db(x) - _rms_db(y[2000:-2000]) >= 60.0


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_streaming_equals_one_shot_for_any_blocks(rate):
    soxr = pytest.importorskip("soxr")
    x = np.random.default_rng(rate).uniform(-0.9, 0.9, size=rate * 3 // 2 + 7).astype(np.float32)
    whole = _resample(x, rate)
    reference = soxr.resample(x, rate, 16000, quality="HQ")
    sizes = list(np.random.default_rng(1).choice([1, 3, 160, 441, 1000, 4096], size=64))
    blocks = _resample(x, rate, sizes)
    assert len(whole) == len(blocks) == len(reference) == round(len(x) * 16000 / rate)
    assert np.abs(blocks - whole).max() <= 1e-6
    assert np.abs(whole - reference).max() <= 1e-6


def test_flush_starts_a_new_signal_and_same_rate_passes_through():
    r = StreamResampler(48000)
    x = _tone(440.0, 48000, 0.5)
    first = np.concatenate([r.process(x), r.flush()])
    second = np.concatenate([r.process(x), r.flush()])
    assert np.array_equal(first, second)
    same = StreamResampler(16000)
    y = _tone(440.0, 16000, 0.1)
    assert not same.active and np.array_equal(same.process(y), y) and same.flush().size == 0


def test_rejects_bad_settings():
    with pytest.raises(ValueError, match="quality"):
        StreamResampler(48000, quality="LQ")
    with pytest.raises(ValueError, match="positive"):
        StreamResampler(0)
    with pytest.raises(ValueError, match="mono"):
        StreamResampler(48000).process(np.zeros((10, 2), np.float32))
