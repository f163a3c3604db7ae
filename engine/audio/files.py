"""Audio files (WAV, FLAC, OGG and whatever libsndfile reads) as a block source at 16 kHz mono."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np

from ..errors import AudioFormatError
from .edge import EdgeConverter
from .pcm import FORMATS
from .sources import BlockSource

# libsndfile subtype -> (dtype to read, PCM format of the values, right shift to the true bit depth).
# 8-bit files come back as int16 (<< 8) and 24-bit ones as int32 (<< 8); shifting back keeps the depth.
_INTEGER_SUBTYPES = {
    "PCM_U8": ("int16", "s8", 8),
    "PCM_S8": ("int16", "s8", 8),
    "PCM_16": ("int16", "s16", 0),
    "PCM_24": ("int32", "s24", 8),
    "PCM_32": ("int32", "s32", 0),
}
_STREAMED_SIZES = (0, 0xFFFFFFFF)  # data sizes of WAVs written to pipes: length unknown


def wav_shortfall(path: Path) -> str | None:
    """Why a RIFF/WAVE file is shorter than its header says, or None (libsndfile reads such files silently)."""
    with open(path, "rb") as fh:
        head = fh.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        size = os.fstat(fh.fileno()).st_size
        pos = 12
        while pos + 8 <= size:
            fh.seek(pos)
            chunk, length = struct.unpack("<4sI", fh.read(8))
            if chunk == b"data":
                have = size - pos - 8
                if length in _STREAMED_SIZES or length >= 0x7FFF0000 or have >= length:
                    return None
                return f"truncated: the data chunk declares {length} bytes, the file holds {have}"
            pos += 8 + length + (length & 1)
    return None


class FileSource(BlockSource):
    """Reads ``path`` in blocks of ``block_s`` seconds and converts them once to 16 kHz mono float32."""

    def __init__(self, path: str | os.PathLike, channel: int | None = None, block_s: float = 0.1, quality: str = "HQ"):
        import soundfile as sf  # audio extra

        self.path = Path(path)
        name = f"file {self.path}"
        if not self.path.is_file():
            raise AudioFormatError(name, "no such file")
        try:
            self._file = sf.SoundFile(str(self.path))
        except (RuntimeError, OSError, TypeError) as e:  # LibsndfileError is a RuntimeError
            raise AudioFormatError(name, f"cannot read it as audio ({e})") from e
        try:
            info = self._file
            if info.format in ("WAV", "WAVEX") and (problem := wav_shortfall(self.path)):
                raise AudioFormatError(name, problem)
            if info.channels < 1 or info.samplerate <= 0:
                raise AudioFormatError(name, f"{info.channels} channels at {info.samplerate} Hz")
            if info.subtype in _INTEGER_SUBTYPES:
                self._dtype, fmt, self._shift = _INTEGER_SUBTYPES[info.subtype]
            else:  # FLOAT, DOUBLE, or a codec (VORBIS, OPUS, ULAW, ...) that libsndfile decodes to float
                double = info.subtype == "DOUBLE"
                self._dtype, fmt, self._shift = ("float64", "f64", 0) if double else ("float32", "f32", 0)
            spec = FORMATS[fmt]
            edge = EdgeConverter(name, spec, info.samplerate, info.channels, channel, info.subtype, quality)
        except (AudioFormatError, ValueError):
            self._file.close()
            raise
        super().__init__(edge)
        self.declared_frames = info.frames  # from the header; checked when the file ends
        self._block = max(1, round(block_s * info.samplerate))
        self._read = 0

    def _next_native(self) -> np.ndarray | None:
        try:
            block = self._file.read(self._block, dtype=self._dtype, always_2d=True)  # (frames, C)
        except RuntimeError as e:
            raise AudioFormatError(self.conversion.source, f"corrupt after frame {self._read} ({e})") from e
        if len(block) == 0:
            if self._read < self.declared_frames:
                raise AudioFormatError(
                    self.conversion.source,
                    f"truncated: {self._read} of {self.declared_frames} frames could be read",
                )
            return None
        self._read += len(block)
        return block >> self._shift if self._shift else block

    def close(self) -> None:
        super().close()
        self._file.close()
