"""The audio source protocol, and the sources that read from memory or a raw PCM byte stream."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import BinaryIO, Protocol, runtime_checkable

import numpy as np

from ..errors import AudioFormatError
from .edge import Conversion, EdgeConverter
from .pcm import decode, format_of_dtype, pcm_format


@runtime_checkable
class AudioSource(Protocol):
    """Yields 16 kHz mono float32 blocks in [-1, 1].

    ``read(timeout)`` returns the next block (possibly empty when nothing arrived within ``timeout``
    seconds) or None at the end of input; every source is a context manager that closes itself.
    """

    conversion: Conversion

    def read(self, timeout: float | None = None) -> np.ndarray | None: ...

    def close(self) -> None: ...

    def __enter__(self) -> AudioSource: ...

    def __exit__(self, *exc: object) -> None: ...


class BlockSource(ABC):
    """Shared plumbing of the pull sources: end-of-input tail, close, context manager."""

    def __init__(self, edge: EdgeConverter) -> None:
        self.edge = edge
        self.conversion = edge.conversion
        self._ended = False

    @property
    def clipped_samples(self) -> int:
        return self.edge.clipped_samples

    def read(self, timeout: float | None = None) -> np.ndarray | None:
        """Next 16 kHz block, or None once the input and the resampler's tail are exhausted.

        ``timeout`` is accepted for the protocol; a pull source reads what its input has.
        """
        if self._ended:
            return None
        block = self._next_native()
        if block is None:
            self._ended = True
            self.close()
            return self.edge.finish()
        return self.edge.convert(block)

    @abstractmethod
    def _next_native(self) -> np.ndarray | None:
        """(frames, channels) in the source's native format, or None at the end."""

    def close(self) -> None:
        """Release the input; further reads return None."""
        self._ended = True

    def __enter__(self) -> BlockSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ArraySource(BlockSource):
    """An in-memory signal (frames,) or (frames, channels) of any supported dtype, in blocks."""

    def __init__(
        self,
        samples: np.ndarray,
        sample_rate: int,
        channel: int | None = None,
        block_s: float = 0.1,
        fmt: str | None = None,
        name: str = "array",
    ) -> None:
        x = np.asarray(samples)
        self._x = x[:, None] if x.ndim == 1 else x  # (frames, C)
        spec = pcm_format(fmt) if fmt else format_of_dtype(x.dtype)
        super().__init__(EdgeConverter(name, spec, sample_rate, self._x.shape[1], channel))
        self._block = max(1, round(block_s * sample_rate))
        self._pos = 0

    def _next_native(self) -> np.ndarray | None:
        if self._pos >= len(self._x):
            return None
        block = self._x[self._pos : self._pos + self._block]
        self._pos += len(block)
        return block


class RawSource(BlockSource):
    """Headerless interleaved little-endian PCM from a binary stream (e.g. stdin, ``arecord -t raw``).

    Reads that end inside a frame keep the partial bytes for the next read; bytes of an incomplete
    frame at the very end of the stream are dropped and counted in ``discarded_bytes``.
    """

    def __init__(
        self,
        stream: BinaryIO,
        fmt: str = "s16le",
        rate: int = 16000,
        channels: int = 1,
        channel: int | None = None,
        block_s: float = 0.1,
        name: str = "raw stream",
    ) -> None:
        self.fmt = pcm_format(fmt)
        super().__init__(EdgeConverter(name, self.fmt, rate, channels, channel))
        self._stream = stream
        self._channels = channels
        self._frame = self.fmt.width * channels
        self._want = max(1, round(block_s * rate)) * self._frame
        self._carry = b""
        self.discarded_bytes = 0

    def _read_bytes(self, n: int) -> bytes:
        read1 = getattr(self._stream, "read1", None)  # returns what is available instead of waiting for n
        try:
            data = read1(n) if read1 is not None else self._stream.read(n)
        except (OSError, ValueError) as e:
            raise AudioFormatError(self.conversion.source, f"read failed: {e}") from e
        return data or b""

    def _next_native(self) -> np.ndarray | None:
        while True:
            data = self._read_bytes(self._want - len(self._carry))
            if not data:
                self.discarded_bytes += len(self._carry)
                self._carry = b""
                return None
            data = self._carry + data
            whole = len(data) - len(data) % self._frame
            self._carry = data[whole:]
            if whole:
                return decode(data[:whole], self.fmt, self._channels)
