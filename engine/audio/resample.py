"""Streaming anti-aliased resampling to the model rate (libsoxr through the ``soxr`` package).

The output does not depend on how the input is cut into blocks; ``flush()`` returns the filter's tail at
the end of a signal. Equal rates pass samples through untouched (no filter, no delay).
"""

from __future__ import annotations

import numpy as np

QUALITIES = ("HQ", "VHQ")


class StreamResampler:
    def __init__(self, in_rate: int, out_rate: int = 16000, quality: str = "HQ") -> None:
        if in_rate <= 0 or out_rate <= 0:
            raise ValueError(f"sample rates must be positive, got {in_rate} -> {out_rate}")
        if quality not in QUALITIES:
            raise ValueError(f"resampler quality {quality!r} is not one of {QUALITIES}")
        self.in_rate = int(in_rate)
        self.out_rate = int(out_rate)
        self.quality = quality
        self._stream = None
        if self.in_rate != self.out_rate:
            import soxr  # audio extra; only needed when rates differ

            self._stream = soxr.ResampleStream(self.in_rate, self.out_rate, 1, dtype="float32", quality=quality)

    @property
    def active(self) -> bool:
        """True when samples are actually resampled."""
        return self._stream is not None

    def process(self, x: np.ndarray) -> np.ndarray:
        """x (n,) float32 at in_rate -> (m,) float32 at out_rate (m may be 0 while the filter fills)."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != 1:
            raise ValueError(f"resampler takes mono (n,) blocks, got shape {x.shape}")
        if self._stream is None:
            return x
        return self._stream.resample_chunk(x)

    def flush(self) -> np.ndarray:
        """End of signal -> the remaining output (m,) float32; the resampler is then ready for a new one."""
        if self._stream is None:
            return np.zeros(0, dtype=np.float32)
        tail = self._stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
        self._stream.clear()
        return tail

    def reset(self) -> None:
        """Drop buffered input and start a new signal."""
        if self._stream is not None:
            self._stream.clear()
