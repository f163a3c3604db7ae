"""NeMo's AudioToMelSpectrogramPreprocessor (eval mode) in numpy, offline and streaming.

The recipe (tests/fixtures/nemo/README.md §8.1): pre-emphasis over the whole signal (x[0] kept), frames of
n_fft samples every hop samples over the signal zero-padded by n_fft // 2 on each side (torch.stft
center=True, pad_mode="constant"), a symmetric Hann window of win_length samples zero-padded to n_fft and
centred, |rfft| then ** mag_power, the mel filterbank, log(x + guard). There are N // hop + 1 columns;
columns >= N // hop are set to 0. Everything is computed in float32, like NeMo.
"""

from __future__ import annotations

import numpy as np

from .features_config import FeatureConfig


def hann_window(cfg: FeatureConfig) -> np.ndarray:
    """Symmetric Hann window (torch.hann_window(win_length, periodic=False)) -> (win_length,) float32."""
    n = cfg.win_length
    if n == 1:
        return np.ones(1, dtype=np.float32)
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / (n - 1))).astype(np.float32)


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney mel scale: linear below 1 kHz (3 mels per 200 Hz), logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    mel = hz / (200.0 / 3.0)
    log_part = hz >= 1000.0
    mel[log_part] = 15.0 + np.log(hz[log_part] / 1000.0) / (np.log(6.4) / 27.0)
    return mel


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    hz = mel * (200.0 / 3.0)
    log_part = mel >= 15.0
    hz[log_part] = 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel[log_part] - 15.0))
    return hz


def mel_filterbank(cfg: FeatureConfig) -> np.ndarray:
    """Slaney-scale, Slaney-normalised triangular filters over 0..sr/2 -> (features, n_fft // 2 + 1) float32.

    Same as librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=features, norm="slaney"), which is
    what NeMo builds when a checkpoint carries no ``preprocessor.featurizer.fb``.
    """
    fft_hz = np.fft.rfftfreq(cfg.n_fft, d=1.0 / cfg.sample_rate)  # (K,)
    edges = _mel_to_hz(np.linspace(0.0, _hz_to_mel(np.array([cfg.sample_rate / 2.0]))[0], cfg.features + 2))
    widths = np.diff(edges)  # (F+1,)
    ramps = edges[:, None] - fft_hz[None, :]  # (F+2, K)
    lower = -ramps[:-2] / widths[:-1, None]  # (F, K)
    upper = ramps[2:] / widths[1:, None]  # (F, K)
    weights = np.maximum(0.0, np.minimum(lower, upper)).astype(np.float32)  # (F, K)
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]  # rounded like librosa: float32 triangles, then norm
    return weights


class Frontend:
    """The fixed parts of the transform: the n_fft window and the filterbank, checked against cfg."""

    def __init__(self, cfg: FeatureConfig, window: np.ndarray | None = None, fb: np.ndarray | None = None):
        cfg.validate()
        self.cfg = cfg
        window = hann_window(cfg) if window is None else np.asarray(window, dtype=np.float32)
        fb = mel_filterbank(cfg) if fb is None else np.asarray(fb, dtype=np.float32)
        if window.shape != (cfg.win_length,):
            raise ValueError(f"window has shape {window.shape}, expected ({cfg.win_length},)")
        bins = cfg.n_fft // 2 + 1
        if fb.ndim == 3 and fb.shape[0] == 1:  # NeMo stores featurizer.fb as (1, F, K)
            fb = fb[0]
        if fb.shape != (cfg.features, bins):
            raise ValueError(f"filterbank has shape {fb.shape}, expected ({cfg.features}, {bins})")
        self.left = (cfg.n_fft - cfg.win_length) // 2  # torch.stft centres a short window in n_fft
        self.window = np.zeros(cfg.n_fft, dtype=np.float32)  # (n_fft,)
        self.window[self.left : self.left + cfg.win_length] = window
        self.fb = np.ascontiguousarray(fb)  # (F, K)
        # The filterbank as a sparse (filter, bin, weight) list: each filter covers a few bins, so a gather and a
        # segmented sum cost about a third of numpy's dense einsum (a BLAS product is faster alone, but its
        # threads fight the network's for the cores). A filter without bins keeps one zero-weight entry.
        rows, bins = np.nonzero(self.fb)
        empty = np.setdiff1d(np.arange(cfg.features), rows)
        rows, bins = np.concatenate([rows, empty]), np.concatenate([bins, np.zeros_like(empty)])
        order = np.argsort(rows, kind="stable")
        self.fb_bins = bins[order]  # (nnz,)
        self.fb_weights = self.fb[rows[order], self.fb_bins][:, None]  # (nnz, 1)
        self.fb_starts = np.searchsorted(rows[order], np.arange(cfg.features))  # (F,) first entry of each filter
        # A frame starts n_fft // 2 samples before its centre; only its windowed part touches the signal.
        self.support_end = self.left + cfg.win_length - cfg.n_fft // 2  # last needed sample, +1, past centre

    def columns(self, padded: np.ndarray, count: int) -> np.ndarray:
        """Log-mel of ``count`` frames starting every hop at padded[0] -> (F, count) float32.

        ``padded`` holds pre-emphasised samples in centre-padded coordinates; frames reaching past its end
        see zeros there, which the zero-padded window ignores anyway.
        """
        cfg = self.cfg
        if count == 0:
            return np.zeros((cfg.features, 0), dtype=np.float32)
        need = (count - 1) * cfg.hop_length + cfg.n_fft
        if len(padded) < need:
            padded = np.concatenate([padded, np.zeros(need - len(padded), dtype=np.float32)])
        view = np.lib.stride_tricks.sliding_window_view(padded[:need], cfg.n_fft)
        frames = view[:: cfg.hop_length] * self.window  # (count, n_fft)
        spec = np.fft.rfft(frames, axis=-1)  # (count, K) complex64
        squared = spec.real * spec.real + spec.imag * spec.imag  # (count, K)
        power = squared if cfg.mag_power == 2.0 else np.sqrt(squared) ** cfg.mag_power
        per_bin = np.ascontiguousarray(power.T)[self.fb_bins] * self.fb_weights  # (nnz, count)
        mel = np.add.reduceat(per_bin, self.fb_starts, axis=0)  # (F, count)
        return np.log(mel + np.float32(cfg.log_zero_guard_value)).astype(np.float32, copy=False)


def preemphasis(x: np.ndarray, coeff: float, previous: float | None = None) -> np.ndarray:
    """y[t] = x[t] - coeff * x[t-1]; the first sample is kept unless ``previous`` continues a signal."""
    y = np.empty_like(x)
    if len(x) == 0:
        return y
    y[0] = x[0] if previous is None else x[0] - np.float32(coeff) * np.float32(previous)
    y[1:] = x[1:] - np.float32(coeff) * x[:-1]
    return y


def log_mel(
    samples: np.ndarray, cfg: FeatureConfig, window: np.ndarray | None = None, fb: np.ndarray | None = None
) -> np.ndarray:
    """samples (N,) float32 at cfg.sample_rate -> log-mel (F, N // hop + 1) float32, the last column 0."""
    front = Frontend(cfg, window, fb)
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"samples must be 1-D, got shape {x.shape}")
    valid = len(x) // cfg.hop_length
    out = np.zeros((cfg.features, valid + 1), dtype=np.float32)  # (F, T)
    y = preemphasis(x, cfg.preemph) if cfg.preemph else x
    padded = np.concatenate([np.zeros(cfg.n_fft // 2, dtype=np.float32), y])  # centre padding, left side
    out[:, :valid] = front.columns(padded, valid)
    return out


class StreamingLogMel:
    """Incremental ``log_mel``: every column as soon as its window is complete, equal to the offline ones.

    Column i is centred on sample hop·i; its windowed span ends at sample hop·i + support_end (200 for
    400/512), after which it is final. Only the samples of columns not yet emitted are kept.
    ``flush()`` ends the signal: it emits the remaining columns (zero right padding) and the masked zero
    column, then starts a new signal.
    """

    def __init__(self, cfg: FeatureConfig, window: np.ndarray | None = None, fb: np.ndarray | None = None):
        self.front = Frontend(cfg, window, fb)
        self.reset()

    def reset(self) -> None:
        """Forget the current signal."""
        half = self.front.cfg.n_fft // 2
        self._padded = np.zeros(half, dtype=np.float32)  # pre-emphasised samples from column _next's frame start
        self._last: float | None = None  # last raw sample (pre-emphasis carry)
        self._count = 0  # samples received in this signal
        self._next = 0  # next column to emit

    @property
    def samples_seen(self) -> int:
        return self._count

    @property
    def columns_emitted(self) -> int:
        return self._next

    def accept(self, samples: np.ndarray) -> np.ndarray:
        """samples (n,) float32 -> the newly final columns (F, k), k >= 0."""
        x = np.asarray(samples, dtype=np.float32)
        if x.ndim != 1:
            raise ValueError(f"samples must be 1-D, got shape {x.shape}")
        if len(x) == 0:
            return np.zeros((self.front.cfg.features, 0), dtype=np.float32)
        cfg = self.front.cfg
        y = preemphasis(x, cfg.preemph, self._last) if cfg.preemph else x
        self._last = float(x[-1])
        self._padded = np.concatenate([self._padded, y])
        self._count += len(x)
        hop = cfg.hop_length
        # Final when the windowed span is in, and column < N // hop holds for any N >= count.
        end = min((self._count - self.front.support_end) // hop, self._count // hop - 1) + 1
        return self._emit(max(end - self._next, 0))

    def flush(self) -> np.ndarray:
        """End of signal -> the remaining columns and the masked zero column (F, k + 1); then reset."""
        cfg = self.front.cfg
        valid = self._count // cfg.hop_length
        last = self._emit(valid - self._next)
        out = np.concatenate([last, np.zeros((cfg.features, 1), dtype=np.float32)], axis=1)
        self.reset()
        return out

    def _emit(self, count: int) -> np.ndarray:
        cols = self.front.columns(self._padded, count)  # (F, count)
        drop = count * self.front.cfg.hop_length
        self._padded = self._padded[drop:].copy() if drop else self._padded
        self._next += count
        return cols
