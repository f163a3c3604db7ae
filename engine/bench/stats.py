"""The arithmetic of a benchmark: percentiles, real-time factor, long-run windows and RSS growth. Pure numpy."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

LONG_WINDOW_S = 600.0  # the long run compares its first and last 10 minutes ...
LONG_WINDOW_FRACTION = 1 / 6  # ... or its first and last sixth when it is shorter than an hour


def rtf(compute_s: float, audio_s: float) -> float:
    """Real-time factor: compute seconds per second of audio (< 1 keeps up with a live source)."""
    if audio_s <= 0:
        raise ValueError(f"audio duration must be positive, got {audio_s}")
    return compute_s / audio_s


@dataclass(frozen=True)
class LatencySummary:
    """Per-chunk compute latency in seconds; percentiles interpolate linearly (numpy's default)."""

    count: int
    mean_s: float
    p50_s: float
    p95_s: float
    p99_s: float
    max_s: float

    @classmethod
    def of(cls, values: np.ndarray | list[float]) -> LatencySummary:
        v = np.asarray(values, dtype=np.float64)  # (n,)
        if v.size == 0:
            raise ValueError("no latencies to summarize")
        p50, p95, p99 = np.percentile(v, [50, 95, 99])
        return cls(int(v.size), float(v.mean()), float(p50), float(p95), float(p99), float(v.max()))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def long_window_s(audio_s: float) -> float:
    """Width of the first / last window the long run compares."""
    return min(LONG_WINDOW_S, audio_s * LONG_WINDOW_FRACTION)


@dataclass(frozen=True)
class Drift:
    """Median per-chunk latency of the first vs the last window of a long run."""

    window_s: float
    first_median_s: float
    last_median_s: float

    @property
    def ratio(self) -> float:
        return self.last_median_s / self.first_median_s

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": self.ratio}


def latency_drift(at_s: np.ndarray, latency_s: np.ndarray, audio_s: float) -> Drift:
    """at_s (n,) stream time each chunk's audio ended, latency_s (n,) its compute latency."""
    at, lat = np.asarray(at_s, np.float64), np.asarray(latency_s, np.float64)  # (n,), (n,)
    w = long_window_s(audio_s)
    first, last = lat[at <= w], lat[at > audio_s - w]
    if first.size == 0 or last.size == 0:
        raise ValueError(f"a {audio_s:.1f} s run has no chunks in its {w:.1f} s windows")
    return Drift(w, float(np.median(first)), float(np.median(last)))


@dataclass(frozen=True)
class RssGrowth:
    """Resident memory over a long run: growth from the end of warm-up to the end, and the peak sampled."""

    baseline_at_s: float  # stream time of the baseline sample
    baseline_bytes: int
    end_bytes: int
    max_bytes: int

    @property
    def growth_bytes(self) -> int:
        return self.end_bytes - self.baseline_bytes

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "growth_bytes": self.growth_bytes}


def rss_growth(at_s: np.ndarray, rss_bytes: np.ndarray, warmup_s: float) -> RssGrowth:
    """at_s (n,) stream times of the samples (ascending), rss_bytes (n,); baseline = first sample at or after
    ``warmup_s`` (the last one if none is)."""
    at, rss = np.asarray(at_s, np.float64), np.asarray(rss_bytes, np.int64)  # (n,), (n,)
    if at.size == 0:
        raise ValueError("no RSS samples")
    i = min(int(np.searchsorted(at, warmup_s)), at.size - 1)
    return RssGrowth(float(at[i]), int(rss[i]), int(rss[-1]), int(rss.max()))
