"""PCM decoding and scaling, channel policy, NaN rejection and clip counting at the edge."""

from __future__ import annotations

from dataclasses import FrozenInstanceError

import numpy as np
import pytest

from ouvir.engine.audio.edge import EdgeConverter
from ouvir.engine.audio.pcm import (
    FORMATS,
    count_full_scale,
    decode,
    downmix,
    format_of_dtype,
    pcm_format,
    to_float32,
)
from ouvir.engine.errors import NonFiniteAudioError


def test_raw_bytes_of_every_format_scale_by_bit_depth():
    cases = {
        "u8": (np.array([0, 64, 128, 255], np.uint8).tobytes(), [-1.0, -0.5, 0.0, 127 / 128]),
        "s8": (np.array([-128, -64, 0, 127], np.int8).tobytes(), [-1.0, -0.5, 0.0, 127 / 128]),
        "s16": (np.array([-32768, 16384, 0, 32767], "<i2").tobytes(), [-1.0, 0.5, 0.0, 32767 / 32768]),
        "s24": (bytes.fromhex("000080" "000040" "000000" "ffff7f"), [-1.0, 0.5, 0.0, (2**23 - 1) / 2**23]),
        "s32": (np.array([-(2**31), 2**30, 0, 2**31 - 1], "<i4").tobytes(), [-1.0, 0.5, 0.0, 1.0]),
        "f32": (np.array([-1.0, 0.5, 0.0, 0.25], "<f4").tobytes(), [-1.0, 0.5, 0.0, 0.25]),
        "f64": (np.array([-1.0, 0.5, 0.0, 0.25], "<f8").tobytes(), [-1.0, 0.5, 0.0, 0.25]),
    }
    for name, (data, want) in cases.items():
        fmt = pcm_format(name + "le")
        native = decode(data, fmt, channels=1)
        assert native.shape == (4, 1), name
        got = to_float32(native, fmt)
        assert got.dtype == np.float32
        np.testing.assert_allclose(got[:, 0], want, rtol=0, atol=1e-7, err_msg=name)


def test_s24_unpacks_sign_and_interleaving():
    values = np.array([[-(2**23), 1], [2**23 - 1, -2], [-5, 300000]], dtype=np.int32)  # (frames, 2)
    packed = b"".join(int(v & 0xFFFFFF).to_bytes(3, "little") for v in values.ravel())
    assert np.array_equal(decode(packed, FORMATS["s24"], channels=2), values)


def test_decode_rejects_partial_frames_and_unknown_formats():
    with pytest.raises(ValueError, match="whole number"):
        decode(b"\x00" * 5, FORMATS["s16"], channels=2)
    with pytest.raises(ValueError, match="unsupported PCM format"):
        pcm_format("s16be")
    with pytest.raises(ValueError, match="unsupported sample dtype"):
        format_of_dtype(np.complex64)


def test_dtype_formats():
    assert [format_of_dtype(t).name for t in (np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64)] == [
        "u8", "s8", "s16", "s32", "f32", "f64",
    ]


def test_full_scale_counts():
    assert count_full_scale(np.array([[-32768], [32767], [0], [-32767]], np.int16), FORMATS["s16"]) == 2
    assert count_full_scale(np.array([[0], [255], [128]], np.uint8), FORMATS["u8"]) == 2
    assert count_full_scale(np.array([[-(2**23)], [2**23 - 1], [5]], np.int32), FORMATS["s24"]) == 2
    assert count_full_scale(np.array([[1.0, -1.5], [0.999, 0.0]], np.float32), FORMATS["f32"]) == 2


def test_floats_are_clipped_into_range():
    got = to_float32(np.array([[1.5], [-2.0], [0.25]], np.float64), FORMATS["f64"])
    assert np.array_equal(got[:, 0], np.array([1.0, -1.0, 0.25], np.float32))


def test_downmix_mean_or_pick():
    x = np.array([[0.2, 0.4, -0.6], [1.0, 0.0, 0.5]], np.float32)
    np.testing.assert_allclose(downmix(x, None), [0.0, 0.5], atol=1e-7)
    assert np.array_equal(downmix(x, 2), x[:, 2])


def test_edge_converter_reports_what_it_did():
    edge = EdgeConverter("test", FORMATS["s16"], 16000, 2, channel=None)
    c = edge.conversion
    assert (c.sample_rate, c.channels, c.sample_format, c.bits, c.channel_policy, c.resampled) == (
        16000, 2, "s16", 16, "mean of 2", False,
    )
    assert "mean of 2" in c.describe() and c.rate == 16000
    out = edge.convert(np.array([[32767, -32768], [16384, 0], [-32768, -32768]], np.int16))
    np.testing.assert_allclose(out, [-0.5 / 32768, 0.25, -1.0], atol=1e-7)
    assert edge.clipped_samples == 4 and edge.frames_in == 3
    with pytest.raises(FrozenInstanceError):
        c.channels = 1  # type: ignore[misc]

    picked = EdgeConverter("test", FORMATS["f32"], 48000, 6, channel=3)
    assert picked.conversion.channel_policy == "channel 3 of 6"
    assert picked.conversion.resampled and picked.conversion.resampler == "soxr HQ"
    assert picked.conversion.bits is None
    with pytest.raises(ValueError, match="channel=6 does not exist"):
        EdgeConverter("test", FORMATS["f32"], 48000, 6, channel=6)


def test_edge_converter_rejects_nan_and_inf_with_position():
    edge = EdgeConverter("mic 1", FORMATS["f32"], 16000, 2)
    edge.convert(np.zeros((100, 2), np.float32))
    block = np.zeros((50, 2), np.float32)
    block[7, 1] = np.nan
    block[9, 0] = np.inf
    with pytest.raises(NonFiniteAudioError, match=r"mic 1: 2 non-finite sample\(s\).*frame 107") as err:
        edge.convert(block)
    assert err.value.count == 2 and err.value.first_frame == 107


def test_edge_output_stays_in_range_after_resampling():
    t = np.arange(48000) / 48000
    square = np.where(np.sin(2 * np.pi * 440 * t) >= 0, 32767, -32768).astype(np.int16)  # rings when filtered
    edge = EdgeConverter("sq", FORMATS["s16"], 48000, 1)
    out = np.concatenate([edge.convert(square[:, None]), edge.finish()])
    assert len(out) == 16000
    assert np.abs(out).max() <= 1.0 and np.abs(out).max() > 0.99
    assert edge.clipped_samples == 48000

