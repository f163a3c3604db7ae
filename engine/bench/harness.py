"""Timing one stream: feed chunk-sized blocks as fast as the machine goes, time each, sample RSS.

The clock, the CPU-time meter and the RSS reader are injected (tests drive a fake clock). A block holds
one chunk's worth of new audio (the look-ahead's shift), so after the first block every ``feed`` decodes
exactly one chunk: its time is that chunk's compute latency (features + network + decoding), what a live
microphone loop waits for. Every per-block series is allocated and written in full before the first block,
so the harness's own memory does not grow while a long run samples RSS.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any, Protocol

import numpy as np

from ouvir.engine.bench.audio import LoopedAudio
from ouvir.engine.bench.machine import cpu_seconds, current_rss_bytes
from ouvir.engine.bench.stats import LatencySummary, rtf

PARTS = ("features_s", "encoder_s", "heads_s")  # where an engine that can tell spends a block's time


@dataclass
class Counters:
    """Cumulative over an engine's life: chunks decoded and seconds spent per part (0 where unknown)."""

    chunks: int = 0
    features_s: float = 0.0
    encoder_s: float = 0.0
    heads_s: float = 0.0

    def parts(self) -> tuple[float, ...]:
        return tuple(getattr(self, p) for p in PARTS)


class Engine(Protocol):
    """A streaming recognizer behind one seam: ouvir's Recognizer or sherpa-onnx (engines.py)."""

    label: str
    has_parts: bool  # the counters split time into features / encoder / heads
    counters: Counters
    tokens: int  # tokens emitted by the current stream so far

    def new_stream(self) -> None: ...

    def feed(self, samples: np.ndarray) -> None: ...

    def finish(self) -> None: ...


@dataclass(frozen=True)
class Meters:
    clock: Callable[[], float] = perf_counter
    cpu: Callable[[], float] = cpu_seconds
    rss: Callable[[], int] = current_rss_bytes


REAL_METERS = Meters()


@dataclass
class Trace:
    """One stream's measurements. Per-block arrays: at_s is the stream time at the end of the block."""

    audio_s: float
    at_s: np.ndarray  # (n,) float64
    latency_s: np.ndarray  # (n,) float64, time of feed()
    cpu_block_s: np.ndarray  # (n,) float64, process CPU time of feed() (all threads)
    chunks: np.ndarray  # (n,) int64, chunks decoded by the block
    parts: np.ndarray  # (n, len(PARTS)) float64, per-part seconds of the block
    finish_s: float  # input_finished + the last chunks
    finish_chunks: int
    wall_s: float
    cpu_s: float
    tokens: int
    rss_at_s: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (m,) stream time of each RSS sample
    rss_bytes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # (m,)

    @property
    def compute_s(self) -> float:
        return float(self.latency_s.sum()) + self.finish_s


def run_stream(
    engine: Engine, audio: LoopedAudio, block: int, total: int, meters: Meters = REAL_METERS,
    rss_every: int | None = None,
) -> Trace:
    """Stream ``total`` samples of ``audio`` through a new stream of ``engine`` in blocks of ``block``;
    sample RSS after every ``rss_every`` blocks (and at the start and end) when given."""
    n = -(-total // block)
    at = np.arange(1, n + 1, dtype=np.float64) * block  # (n,) samples at the end of each block
    at[-1] = total
    at /= audio.sample_rate
    latency, cpu_block = np.full(n, np.nan), np.full(n, np.nan)  # (n,), (n,)
    chunks = np.full(n, -1, dtype=np.int64)  # (n,)
    parts = np.full((n, len(PARTS)), np.nan)  # (n, P)
    m = 2 + n // rss_every if rss_every else 0
    rss_at, rss = np.full(m, np.nan), np.full(m, -1, dtype=np.int64)  # (m,), (m,)
    k = 0
    c = engine.counters
    engine.new_stream()
    if m:
        rss_at[0], rss[0], k = 0.0, meters.rss(), 1
    cpu0, wall0 = meters.cpu(), meters.clock()
    for i, samples in enumerate(audio.blocks(block, total)):
        chunks0, parts0 = c.chunks, c.parts()
        u0, t0 = meters.cpu(), meters.clock()  # the CPU meter is slow (it sums all threads): outside the wall time
        engine.feed(samples)
        latency[i], cpu_block[i] = meters.clock() - t0, meters.cpu() - u0
        chunks[i] = c.chunks - chunks0
        parts[i] = np.subtract(c.parts(), parts0)
        if m and (i + 1) % rss_every == 0:
            rss_at[k], rss[k], k = at[i], meters.rss(), k + 1
    chunks0 = c.chunks
    t0 = meters.clock()
    engine.finish()
    finish_s = meters.clock() - t0
    wall, cpu = meters.clock() - wall0, meters.cpu() - cpu0
    if m:
        rss_at[k], rss[k], k = at[-1], meters.rss(), k + 1
    return Trace(total / audio.sample_rate, at, latency, cpu_block, chunks, parts, finish_s, c.chunks - chunks0,
                 wall, cpu, engine.tokens, rss_at[:k], rss[:k])


def summarize(trace: Trace, chunk_s: float, has_parts: bool) -> dict[str, Any]:
    """The numbers of one run. Latency percentiles cover the blocks that decoded exactly one chunk."""
    one = trace.chunks == 1  # (n,)
    lat = LatencySummary.of(trace.latency_s[one])
    out: dict[str, Any] = {
        "audio_s": trace.audio_s,
        "compute_s": trace.compute_s,
        "rtf": rtf(trace.compute_s, trace.audio_s),
        "wall_s": trace.wall_s,
        "cpu_s": trace.cpu_s,
        "cpu_per_audio_s": trace.cpu_s / trace.audio_s,
        "chunks": int(trace.chunks.sum()) + trace.finish_chunks,
        "chunk_s": chunk_s,
        "latency": lat.to_dict(),
        "cpu_latency": LatencySummary.of(trace.cpu_block_s[one]).to_dict(),
        "p99_of_chunk": lat.p99_s / chunk_s,
        "tokens": trace.tokens,
        "tokens_per_s": trace.tokens / trace.audio_s,
    }
    if has_parts:
        totals = np.nansum(trace.parts, axis=0)  # (P,)
        out["parts_s"] = {p.removesuffix("_s"): float(t) for p, t in zip(PARTS, totals, strict=True)}
        out["parts_s"]["decoding"] = float(trace.latency_s.sum() - totals.sum())  # decoder loop, scheduler, events
    return out
