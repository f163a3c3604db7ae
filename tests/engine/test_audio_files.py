"""FileSource over every subtype, rate and channel count soundfile writes, and its failures."""

from __future__ import annotations

import numpy as np
import pytest

from ouvir.engine.audio.files import FileSource
from ouvir.engine.errors import AudioFormatError, NonFiniteAudioError

sf = pytest.importorskip("soundfile")


def _signal(rate: int, channels: int, seconds: float = 0.5) -> np.ndarray:
    """(frames, channels): a 440 Hz tone at 0.5 on channel 0, other channels quieter tones."""
    t = np.arange(int(rate * seconds)) / rate
    cols = [0.5 * np.sin(2 * np.pi * 440 * t)]
    cols += [0.1 * np.sin(2 * np.pi * 300 * (c + 1) * t) for c in range(1, channels)]
    return np.stack(cols, axis=1)


def _read_all(source: FileSource) -> np.ndarray:
    with source:
        blocks = []
        while (block := source.read()) is not None:
            assert block.dtype == np.float32 and block.ndim == 1
            blocks.append(block)
    return np.concatenate(blocks)


def _expected(x: np.ndarray, rate: int, channel: int | None) -> np.ndarray:
    import soxr

    mono = (x.mean(axis=1) if channel is None else x[:, channel]).astype(np.float32)
    return mono if rate == 16000 else soxr.resample(mono, rate, 16000, quality="HQ")


# (format, subtype, quantisation step the comparison must allow)
SUBTYPES = [
    ("WAV", "PCM_U8", 2 / 256),
    ("WAV", "PCM_16", 2 / 32768),
    ("WAV", "PCM_24", 1e-6),
    ("WAV", "PCM_32", 1e-6),
    ("WAV", "FLOAT", 1e-6),
    ("WAV", "DOUBLE", 1e-6),
    ("FLAC", "PCM_16", 2 / 32768),
    ("FLAC", "PCM_24", 1e-6),
]


@pytest.mark.parametrize(("container", "subtype", "tol"), SUBTYPES)
def test_subtypes_convert_to_16k_mono(tmp_path, container, subtype, tol):
    rate, channels = 44100, 2
    x = _signal(rate, channels)
    path = tmp_path / f"x.{container.lower()}"
    sf.write(path, x, rate, subtype=subtype, format=container)
    source = FileSource(path)
    c = source.conversion
    assert (c.sample_rate, c.channels, c.sample_format, c.channel_policy, c.resampled) == (
        rate, channels, subtype, "mean of 2", True,
    )
    want_bits = {"PCM_U8": 8, "PCM_16": 16, "PCM_24": 24, "PCM_32": 32}.get(subtype)
    assert c.bits == want_bits
    got = _read_all(source)
    want = _expected(x, rate, None)
    assert len(got) == len(want) == 8000
    assert np.abs(got - want).max() <= 3 * tol + 1e-6


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 44100, 48000])
@pytest.mark.parametrize(("channels", "channel"), [(1, None), (2, None), (2, 1), (6, None), (6, 4)])
def test_rates_and_channels(tmp_path, rate, channels, channel):
    x = _signal(rate, channels, 0.3)
    path = tmp_path / "x.wav"
    sf.write(path, x, rate, subtype="FLOAT")
    source = FileSource(path, channel=channel, block_s=0.037)
    got = _read_all(source)
    want = _expected(x, rate, channel)
    assert len(got) == len(want) == 4800
    assert np.abs(got - want).max() <= 1e-5
    assert source.conversion.resampled == (rate != 16000)
    assert source.read() is None  # stays ended


def test_ogg_vorbis_is_decoded(tmp_path):
    x = _signal(48000, 1, 1.0)
    path = tmp_path / "x.ogg"
    sf.write(path, x, 48000, format="OGG", subtype="VORBIS")
    source = FileSource(path)
    assert source.conversion.sample_format == "VORBIS" and source.conversion.bits is None
    got = _read_all(source)
    assert len(got) == 16000
    rms = np.sqrt(np.mean(got[2000:-2000] ** 2))
    assert abs(rms - 0.5 / np.sqrt(2)) <= 0.01


def test_clipped_samples_are_counted(tmp_path):
    x = np.array([[0.0], [1.0], [-1.0], [0.5], [-1.0]] * 100)
    path = tmp_path / "x.wav"
    sf.write(path, x, 16000, subtype="PCM_16")
    source = FileSource(path)
    _read_all(source)
    assert source.clipped_samples == 300


def test_truncated_wav_is_refused(tmp_path):
    path = tmp_path / "x.wav"
    sf.write(path, _signal(16000, 1), 16000, subtype="PCM_16")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2 + 1])
    with pytest.raises(AudioFormatError, match=r"x\.wav: truncated: the data chunk declares 16000 bytes"):
        FileSource(path)


def test_truncated_flac_is_refused(tmp_path):
    path = tmp_path / "x.flac"
    sf.write(path, np.random.default_rng(0).uniform(-0.5, 0.5, (48000, 2)), 48000, subtype="PCM_24")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(AudioFormatError, match=r"x\.flac: (corrupt|truncated)"):
        _read_all(FileSource(path))


def test_text_file_named_wav_is_refused(tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("this is not audio\n" * 20)
    with pytest.raises(AudioFormatError, match=r"notes\.wav: cannot read it as audio"):
        FileSource(path)


def test_missing_file_is_refused(tmp_path):
    with pytest.raises(AudioFormatError, match=r"nothing\.wav: no such file"):
        FileSource(tmp_path / "nothing.wav")


def test_nan_in_a_float_file_raises_with_the_frame(tmp_path):
    x = _signal(16000, 2)
    x[3000, 1] = np.nan
    path = tmp_path / "nan.wav"
    sf.write(path, x, 16000, subtype="FLOAT")
    source = FileSource(path, block_s=0.1)
    with pytest.raises(NonFiniteAudioError, match=r"nan\.wav: 1 non-finite .* frame 3000"):
        _read_all(source)


def test_channel_out_of_range_is_refused(tmp_path):
    path = tmp_path / "x.wav"
    sf.write(path, _signal(16000, 2), 16000)
    with pytest.raises(ValueError, match="channel=2 does not exist"):
        FileSource(path, channel=2)
