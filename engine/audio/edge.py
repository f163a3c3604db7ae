"""The one place where input audio becomes 16 kHz mono float32 in [-1, 1], and the record of how."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..errors import NonFiniteAudioError
from .pcm import PcmFormat, count_full_scale, downmix, nonfinite, to_float32
from .resample import StreamResampler

MODEL_RATE = 16000


@dataclass(frozen=True)
class Conversion:
    """What was done to one input: from (rate, channels, format) to 16 kHz mono float32."""

    source: str  # "file /path/x.wav", "raw stdin", "mic sounddevice #3 'USB Audio'"
    sample_rate: int  # of the input
    channels: int  # of the input
    sample_format: str  # "s16", "s24", "f32", ... or the file's subtype, e.g. "PCM_24", "VORBIS"
    bits: int | None  # bit depth of integer input; None for float/compressed input
    channel_policy: str  # "mono" | "mean of N" | "channel k of N"
    resampled: bool
    resampler: str  # "soxr HQ" | "soxr VHQ" | "none"
    rate: int = MODEL_RATE  # of the output

    def describe(self) -> str:
        depth = f"{self.bits}-bit " if self.bits else ""
        rate = f"{self.sample_rate} -> {self.rate} Hz ({self.resampler})" if self.resampled else f"{self.rate} Hz"
        return (
            f"{self.source}: {depth}{self.sample_format}, {self.channels} ch ({self.channel_policy}), "
            f"{rate}, float32 mono"
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def channel_policy(channels: int, channel: int | None) -> str:
    if channel is not None:
        if not 0 <= channel < channels:
            raise ValueError(f"channel={channel} does not exist: the input has {channels} channel(s)")
        return f"channel {channel} of {channels}"
    return "mono" if channels == 1 else f"mean of {channels}"


class EdgeConverter:
    """Native sample blocks of one input -> 16 kHz mono float32 blocks; counts what it clipped.

    Blocks are (frames, channels) arrays in ``fmt``'s value range (integers in any container, e.g.
    24-bit in int32). NaN/Inf raise NonFiniteAudioError naming the source and frame.
    """

    def __init__(
        self,
        source: str,
        fmt: PcmFormat,
        sample_rate: int,
        channels: int,
        channel: int | None = None,
        sample_format: str | None = None,
        quality: str = "HQ",
    ) -> None:
        if channels < 1:
            raise ValueError(f"{source}: {channels} channels")
        self.fmt = fmt
        self.channel = channel
        self.resampler = StreamResampler(sample_rate, MODEL_RATE, quality)
        self.conversion = Conversion(
            source=source,
            sample_rate=int(sample_rate),
            channels=int(channels),
            sample_format=sample_format or fmt.name,
            bits=None if fmt.is_float else fmt.bits,
            channel_policy=channel_policy(channels, channel),
            resampled=self.resampler.active,
            resampler=f"soxr {quality}" if self.resampler.active else "none",
        )
        self.frames_in = 0  # input frames converted so far
        self.clipped_samples = 0  # input samples at or beyond full scale (all channels)

    def convert(self, block: np.ndarray) -> np.ndarray:
        """block (frames, channels) -> (n,) float32 at 16 kHz (n may be 0 while the resampler fills)."""
        channels = self.conversion.channels
        if block.ndim == 1 and channels == 1:
            block = block[:, None]
        if block.ndim != 2 or block.shape[1] != channels:
            raise ValueError(f"{self.conversion.source}: block of shape {block.shape}, expected (frames, {channels})")
        if self.fmt.is_float:
            count, first = nonfinite(block)
            if count:
                raise NonFiniteAudioError(self.conversion.source, count, self.frames_in + first)
        self.clipped_samples += count_full_scale(block, self.fmt)
        self.frames_in += len(block)
        mono = downmix(to_float32(block, self.fmt), self.channel)  # (frames,)
        return self._bounded(self.resampler.process(mono))

    def finish(self) -> np.ndarray:
        """End of input -> the resampler's tail (n,) float32."""
        return self._bounded(self.resampler.flush())

    @staticmethod
    def _bounded(y: np.ndarray) -> np.ndarray:
        # Resampling a full-scale input can ring slightly past +-1; the output contract is [-1, 1].
        return np.clip(y, -1.0, 1.0, out=y) if y.size and np.abs(y).max() > 1.0 else y
