"""Seeded waveform augmentation in numpy (and sox): voice shift, speed, silence padding, reverb, noise, level,
telephone channel (band and mu-law codec; on the fly only, `batching.OnlineAugment`).

`sample_params(rng, cfg)` draws one `AugmentParams` (stored in the manifest next to each utterance);
`apply(audio, params, rng, babble)` renders it. Both take an explicit generator, so a seed fixes the
result. Order: voice shift -> speed -> pad -> reverb -> noise -> level, so that noise and the reverb tail also
fill the padded silence, as in a room.

The voice shift moves pitch and formants together by ``shift_cents`` at constant tempo (sox's ``pitch``:
resampling plus WSOLA time-stretch), a vocal-tract-length change that turns one synthetic voice into others
(a female voice down 400 cents reads as a male one); speed perturbation alone moves them by 10 % at most and
changes the tempo with them.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

import numpy as np
import soxr

from .tts import SAMPLE_RATE

NOISE_KINDS = ("white", "pink", "brown", "babble")


@dataclass(frozen=True)
class AugmentConfig:
    speed: tuple[float, float] = (0.9, 1.1)  # resampling factor (>1: faster and higher)
    pad_s: tuple[float, float] = (0.05, 0.4)  # silence added before and after, each side
    p_reverb: float = 0.35
    rt60_s: tuple[float, float] = (0.1, 0.6)
    p_noise: float = 0.7
    snr_db: tuple[float, float] = (5.0, 30.0)
    floor_snr_db: tuple[float, float] = (50.0, 70.0)  # the others get a faint white floor, not digital zero
    level_dbfs: tuple[float, float] = (-35.0, -15.0)  # RMS of the speech, dB re full scale
    ramp_db: float = 6.0  # largest level drift from start to end of the utterance
    p_shift: float = 0.0  # share of utterances with a voice shift (0: none drawn, as in recipe synth-v1)
    shift_cents: tuple[float, float] = (-500.0, 300.0)


@dataclass(frozen=True)
class AugmentParams:
    speed: float
    pad_start_s: float
    pad_end_s: float
    rt60_s: float | None  # None: dry
    noise: str  # one of NOISE_KINDS
    snr_db: float  # relative to the speech RMS (before padding)
    level_dbfs: float
    ramp_db: float
    shift_cents: float = 0.0  # pitch and formants, at constant tempo


def sample_params(rng: np.random.Generator, cfg: AugmentConfig = AugmentConfig()) -> AugmentParams:
    speed = float(rng.uniform(*cfg.speed))
    pad_start, pad_end = (float(p) for p in rng.uniform(*cfg.pad_s, size=2))
    rt60 = float(rng.uniform(*cfg.rt60_s)) if rng.random() < cfg.p_reverb else None
    if rng.random() < cfg.p_noise:
        noise, snr = str(rng.choice(NOISE_KINDS)), float(rng.uniform(*cfg.snr_db))
    else:
        noise, snr = "white", float(rng.uniform(*cfg.floor_snr_db))
    level = float(rng.uniform(*cfg.level_dbfs))
    ramp = float(rng.uniform(-cfg.ramp_db, cfg.ramp_db))
    shift = 0.0  # drawn last and only when enabled, so that the draws above stay those of synth-v1
    if cfg.p_shift > 0 and rng.random() < cfg.p_shift:
        shift = round(float(rng.uniform(*cfg.shift_cents)), 1)
    def r4(x: float | None) -> float | None:
        return None if x is None else round(x, 4)

    return AugmentParams(r4(speed), r4(pad_start), r4(pad_end), r4(rt60), noise, round(snr, 4), r4(level), r4(ramp),
                         shift)


def shift_voice(audio: np.ndarray, cents: float) -> np.ndarray:
    """Pitch and formants moved by ``cents`` at the same duration (sox ``pitch``); 0 returns ``audio``."""
    if cents == 0.0:
        return audio
    raw = ["-t", "raw", "-e", "floating-point", "-b", "32", "-r", str(SAMPLE_RATE), "-c", "1"]
    done = subprocess.run(["sox", *raw, "-", *raw, "-", "pitch", f"{cents:.1f}"], check=True, capture_output=True,
                          input=np.ascontiguousarray(audio, dtype=np.float32).tobytes())
    return np.frombuffer(done.stdout, dtype=np.float32).copy()


def change_speed(audio: np.ndarray, factor: float) -> np.ndarray:
    """Speed perturbation by resampling (tempo and pitch together): length / factor."""
    return soxr.resample(audio, SAMPLE_RATE * factor, SAMPLE_RATE, quality="HQ").astype(np.float32)


def telephone(audio: np.ndarray, mu: float = 255.0) -> np.ndarray:
    """A narrow-band telephone channel: 300-3400 Hz (through 8 kHz sampling and an FFT band mask), then G.711
    mu-law 8-bit coding and decoding; back at 16 kHz, same length."""
    narrow = soxr.resample(audio, SAMPLE_RATE, 8000, quality="HQ")  # (N/2,)
    spectrum = np.fft.rfft(narrow)
    freqs = np.fft.rfftfreq(len(narrow), d=1 / 8000)
    spectrum[(freqs < 300.0) | (freqs > 3400.0)] = 0.0
    narrow = np.fft.irfft(spectrum, n=len(narrow))
    peak = float(np.max(np.abs(narrow))) if len(narrow) else 0.0
    scale = 0.99 / peak if peak > 0.99 else 1.0  # mu-law codes [-1, 1]
    x = narrow * scale
    code = np.round(np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu) * 127.0)  # 8-bit: -127..127
    y = np.sign(code) * np.expm1(np.abs(code) / 127.0 * np.log1p(mu)) / mu
    wide = soxr.resample(y / scale, 8000, SAMPLE_RATE, quality="HQ")
    return np.pad(wide, (0, max(0, len(audio) - len(wide))))[: len(audio)].astype(np.float32)


def colored_noise(rng: np.random.Generator, n: int, kind: str) -> np.ndarray:
    """Unit-RMS Gaussian noise with a 1/f^k power spectrum: white k=0, pink k=1, brown k=2."""
    exponent = {"white": 0.0, "pink": 1.0, "brown": 2.0}[kind]
    spectrum = np.fft.rfft(rng.standard_normal(n))  # (n//2+1,)
    freqs = np.fft.rfftfreq(n, d=1 / SAMPLE_RATE)  # (n//2+1,)
    freqs[0] = freqs[1] if n > 1 else 1.0
    noise = np.fft.irfft(spectrum / freqs ** (exponent / 2), n=n)  # (n,)
    return (noise / (np.sqrt(np.mean(noise**2)) + 1e-12)).astype(np.float32)


def babble_noise(rng: np.random.Generator, n: int, bank: np.ndarray, talkers: int = 5) -> np.ndarray:
    """Unit-RMS sum of `talkers` random excerpts of other speech (`bank`: (M,) float32)."""
    if len(bank) <= n:
        bank = np.tile(bank, n // len(bank) + 2)
    mix = np.zeros(n, dtype=np.float64)
    for start in rng.integers(0, len(bank) - n, size=talkers):
        mix += bank[start : start + n] * rng.uniform(0.5, 1.0)
    return (mix / (np.sqrt(np.mean(mix**2)) + 1e-12)).astype(np.float32)


def room_impulse_response(rng: np.random.Generator, rt60_s: float) -> np.ndarray:
    """A direct path plus an exponentially decaying noise tail (-60 dB at rt60), unit energy."""
    n = int(rt60_s * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE  # (n,)
    tail = rng.standard_normal(n) * np.exp(-6.9078 * t / rt60_s)  # 6.9078 = ln(1000): -60 dB
    tail[: int(0.002 * SAMPLE_RATE)] = 0.0  # first reflections arrive after ~2 ms
    rir = tail * 0.5 / (np.sqrt(np.sum(tail**2)) + 1e-12)  # the tail has a quarter of the direct energy
    rir[0] = 1.0
    return rir / np.sqrt(np.sum(rir**2))


def reverberate(audio: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """Linear convolution truncated to len(audio) (the tail falls into the end padding)."""
    n = len(audio) + len(rir) - 1
    size = 1 << (n - 1).bit_length()
    wet = np.fft.irfft(np.fft.rfft(audio, size) * np.fft.rfft(rir, size), size)[: len(audio)]
    return wet.astype(np.float32)


def rms(audio: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))


def apply(
    audio: np.ndarray, params: AugmentParams, rng: np.random.Generator, babble: np.ndarray
) -> np.ndarray:
    """(N,) float32 16 kHz speech -> (N',) float32 in [-1, 1]; `babble` is the babble bank (M,)."""
    speech = change_speed(shift_voice(audio, params.shift_cents), params.speed)
    pad_start, pad_end = round(params.pad_start_s * SAMPLE_RATE), round(params.pad_end_s * SAMPLE_RATE)
    speech_rms = rms(speech)
    out = np.concatenate([np.zeros(pad_start, np.float32), speech, np.zeros(pad_end, np.float32)])
    if params.rt60_s is not None:
        out = reverberate(out, room_impulse_response(rng, params.rt60_s))
    n = len(out)
    noise = babble_noise(rng, n, babble) if params.noise == "babble" else colored_noise(rng, n, params.noise)
    out = out + noise * (speech_rms * 10 ** (-params.snr_db / 20))
    ramp = 10 ** (np.linspace(0.0, params.ramp_db, len(out)) / 20)  # (N',)
    out = out * ramp * (10 ** (params.level_dbfs / 20) / (speech_rms + 1e-12))
    peak = float(np.max(np.abs(out)))
    if peak > 0.99:
        out = out * (0.99 / peak)  # never clip: lower the whole utterance instead
    return out.astype(np.float32)
