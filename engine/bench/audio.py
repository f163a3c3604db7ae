"""The benchmark's input: a speech file at 16 kHz mono, looped to any duration and cut into blocks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np


def read_audio(path: str | Path) -> tuple[np.ndarray, str]:
    """The whole file as 16 kHz mono float32 (converted once at the edge) and what the conversion did."""
    from ouvir.engine.audio import FileSource

    with FileSource(path, block_s=10.0) as source:
        blocks = []
        while (block := source.read()) is not None:
            blocks.append(block)
        return np.concatenate(blocks).astype(np.float32, copy=False), source.conversion.describe()


class LoopedAudio:
    """``samples`` repeated end to end: any stretch of it without holding more than one copy in memory."""

    def __init__(self, samples: np.ndarray, sample_rate: int) -> None:
        if samples.ndim != 1 or samples.size == 0:
            raise ValueError(f"need a non-empty mono signal, got shape {samples.shape}")
        self.samples = samples  # (n,) float32
        self.sample_rate = sample_rate

    def blocks(self, block: int, total: int) -> Iterator[np.ndarray]:
        """``total`` samples of the loop in blocks of ``block`` (the last may be shorter); fresh arrays."""
        n = self.samples.size
        for start in range(0, total, block):
            stop = min(start + block, total)
            idx = np.arange(start, stop) % n  # (b,) positions in the loop
            yield self.samples[idx]
