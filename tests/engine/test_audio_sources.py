"""RawSource over reads that split frames, ArraySource, and the shared source protocol."""

from __future__ import annotations

import io

import numpy as np
import pytest

from ouvir.engine.audio import ArraySource, AudioSource, RawSource
from ouvir.engine.audio.pcm import FORMATS, decode, to_float32
from ouvir.engine.errors import AudioFormatError


class TricklingPipe(io.RawIOBase):
    """A pipe that hands out at most a few bytes per read, in a fixed random pattern."""

    def __init__(self, data: bytes, seed: int = 0) -> None:
        self._data = data
        self._pos = 0
        self._rng = np.random.default_rng(seed)
        self.reads = 0

    def readable(self) -> bool:
        return True

    def read1(self, n: int = -1) -> bytes:
        self.reads += 1
        take = min(n, int(self._rng.integers(1, 700)))
        chunk = self._data[self._pos : self._pos + take]
        self._pos += len(chunk)
        return chunk


def _read_all(source: AudioSource) -> np.ndarray:
    blocks = []
    with source:
        while (block := source.read(timeout=0.1)) is not None:
            blocks.append(block)
    return np.concatenate(blocks)


def _pcm(fmt: str, frames: int, channels: int) -> bytes:
    rng = np.random.default_rng(3)
    if fmt == "s24":
        v = rng.integers(-(2**23), 2**23, size=frames * channels)
        return b"".join(int(s & 0xFFFFFF).to_bytes(3, "little") for s in v)
    dtype = {"u8": "u1", "s16": "<i2", "s32": "<i4"}.get(fmt)
    if dtype:
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=frames * channels, endpoint=True).astype(dtype).tobytes()
    return rng.uniform(-1, 1, size=frames * channels).astype("<f4").tobytes()


@pytest.mark.parametrize("fmt", ["u8", "s16", "s24", "s32", "f32"])
@pytest.mark.parametrize("channels", [1, 2])
def test_raw_stream_split_reads_equal_one_decode(fmt, channels):
    frames = 4000 + 13
    data = _pcm(fmt, frames, channels)
    pipe = TricklingPipe(data, seed=channels)
    source = RawSource(pipe, fmt=fmt + "le", rate=16000, channels=channels, block_s=0.01)
    got = _read_all(source)
    want = to_float32(decode(data, FORMATS[fmt], channels), FORMATS[fmt]).mean(axis=1, dtype=np.float32)
    assert pipe.reads > 20
    assert len(got) == frames
    assert np.array_equal(got, want)
    assert source.discarded_bytes == 0
    assert source.conversion.sample_format == fmt and source.conversion.channels == channels


def test_raw_stream_resamples_picks_a_channel_and_drops_a_partial_tail():
    rate = 48000
    t = np.arange(rate) / rate
    stereo = np.stack([0.5 * np.sin(2 * np.pi * 1000 * t), np.zeros_like(t)], axis=1)
    data = (stereo * 32767).round().astype("<i2").tobytes() + b"\x01\x02\x03"  # 3 stray bytes
    source = RawSource(io.BytesIO(data), fmt="s16le", rate=rate, channels=2, channel=0)
    got = _read_all(source)
    assert len(got) == 16000
    assert source.discarded_bytes == 3
    assert source.conversion.channel_policy == "channel 0 of 2" and source.conversion.resampled
    rms = np.sqrt(np.mean(got[1000:-1000] ** 2))
    assert abs(20 * np.log10(rms / (0.5 / np.sqrt(2)))) <= 0.1


def test_raw_stream_read_error_names_the_source():
    class Broken(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def read1(self, n: int = -1) -> bytes:
            raise OSError("pipe broke")

    with pytest.raises(AudioFormatError, match="stdin: read failed: pipe broke"):
        RawSource(Broken(), name="stdin").read()


def test_array_source_blocks_and_end():
    x = (np.random.default_rng(0).uniform(-1, 1, (22050, 2)) * 32767).astype(np.int16)
    source = ArraySource(x, 22050, block_s=0.05)
    assert isinstance(source, AudioSource)
    got = _read_all(source)
    assert len(got) == 16000
    assert source.read() is None
    mono16 = ArraySource(np.full(1600, 0.25, np.float32), 16000)
    assert np.array_equal(_read_all(mono16), np.full(1600, 0.25, np.float32))


def test_array_source_s24_in_int32():
    x = np.array([-(2**23), 2**22, 0], np.int32)
    got = _read_all(ArraySource(x, 16000, fmt="s24"))
    assert np.array_equal(got, np.array([-1.0, 0.5, 0.0], np.float32))
