"""PCM sample formats: raw little-endian bytes or numpy arrays -> float32 in [-1, 1], channel policy.

Integers are scaled by their bit depth (value / 2**(bits-1); u8 is offset by 128 first), so full scale
negative is exactly -1.0. Float samples must be finite and are clipped into [-1, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PcmFormat:
    name: str  # "u8" | "s8" | "s16" | "s24" | "s32" | "f32" | "f64"
    bits: int
    is_float: bool
    raw_dtype: str  # numpy dtype of one little-endian sample in raw bytes ("" for packed s24)

    @property
    def width(self) -> int:
        """Bytes per sample in raw PCM."""
        return self.bits // 8


FORMATS: dict[str, PcmFormat] = {
    f.name: f
    for f in (
        PcmFormat("u8", 8, False, "u1"),
        PcmFormat("s8", 8, False, "i1"),
        PcmFormat("s16", 16, False, "<i2"),
        PcmFormat("s24", 24, False, ""),
        PcmFormat("s32", 32, False, "<i4"),
        PcmFormat("f32", 32, True, "<f4"),
        PcmFormat("f64", 64, True, "<f8"),
    )
}

_DTYPE_FORMATS = {"uint8": "u8", "int8": "s8", "int16": "s16", "int32": "s32", "float32": "f32", "float64": "f64"}


def pcm_format(name: str) -> PcmFormat:
    """'s16le', 's16', 'f32le', 'u8', ... -> PcmFormat (little-endian only)."""
    key = name.lower().removesuffix("le")
    if key not in FORMATS:
        raise ValueError(f"unsupported PCM format {name!r}; expected one of {sorted(FORMATS)} (little-endian)")
    return FORMATS[key]


def format_of_dtype(dtype: np.dtype | type | str) -> PcmFormat:
    """The PCM format an array of this dtype holds (int32 is s32; pass 's24' explicitly for 24-bit)."""
    name = np.dtype(dtype).name
    if name not in _DTYPE_FORMATS:
        raise ValueError(f"unsupported sample dtype {name}; expected one of {sorted(_DTYPE_FORMATS)}")
    return FORMATS[_DTYPE_FORMATS[name]]


def _unpack_s24(data: bytes) -> np.ndarray:
    b = np.frombuffer(data, dtype=np.uint8).reshape(-1, 3).astype(np.int32)  # (n, 3) little-endian bytes
    v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)  # (n,) unsigned 24-bit
    return (v << 8) >> 8  # sign-extended


def decode(data: bytes, fmt: PcmFormat, channels: int) -> np.ndarray:
    """Interleaved raw bytes -> (frames, channels) samples in fmt's value range (s24 in int32)."""
    frame = fmt.width * channels
    if len(data) % frame:
        raise ValueError(f"{len(data)} bytes is not a whole number of {frame}-byte {fmt.name} frames")
    samples = _unpack_s24(data) if fmt.name == "s24" else np.frombuffer(data, dtype=fmt.raw_dtype)
    return samples.reshape(-1, channels)  # (frames, C)


def nonfinite(x: np.ndarray) -> tuple[int, int]:
    """(count, first frame) of NaN/Inf samples in (frames, C) or (frames,); (0, -1) if none."""
    bad = ~np.isfinite(x)
    if not bad.any():
        return 0, -1
    rows = bad.any(axis=1) if bad.ndim == 2 else bad
    return int(bad.sum()), int(np.argmax(rows))


def count_full_scale(x: np.ndarray, fmt: PcmFormat) -> int:
    """Clipped samples: |x| >= 1 for floats, the extreme codes for integers."""
    if fmt.is_float:
        return int(np.count_nonzero(np.abs(x) >= 1.0))
    low = 0 if fmt.name == "u8" else -(2 ** (fmt.bits - 1))
    high = low + 2**fmt.bits - 1
    return int(np.count_nonzero((x <= low) | (x >= high)))


def to_float32(x: np.ndarray, fmt: PcmFormat) -> np.ndarray:
    """Samples in fmt's value range -> float32 in [-1, 1], same shape. Floats must be finite."""
    if fmt.is_float:
        return np.clip(x, -1.0, 1.0).astype(np.float32, copy=False)
    work = np.float64 if fmt.bits > 24 else np.float32  # exact for <= 24 bits
    y = x.astype(work)
    if fmt.name == "u8":
        y -= 128.0
    y *= work(1.0 / 2 ** (fmt.bits - 1))
    return y.astype(np.float32, copy=False)


def downmix(x: np.ndarray, channel: int | None) -> np.ndarray:
    """(frames, C) float32 -> (frames,) float32: the mean of all channels, or channel ``channel``."""
    if channel is not None:
        return np.ascontiguousarray(x[:, channel])
    if x.shape[1] == 1:
        return x[:, 0]
    return x.mean(axis=1, dtype=np.float32)
