"""MicSource's callback/queue/drop logic, device choice and failure reporting, with fake backends.

The real-microphone end-to-end test (PulseAudio virtual mic) lives with the loop tests.
"""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

from ouvir.engine.audio.edge import EdgeConverter
from ouvir.engine.audio.mic import CaptureQueue, InputDevice, MicSource, list_input_devices
from ouvir.engine.audio.mic_backends import PyAudioBackend, SoundDeviceBackend
from ouvir.engine.audio.pcm import FORMATS
from ouvir.engine.errors import DeviceError, DeviceLostError


class FakeStream:
    def __init__(self, sink: CaptureQueue, channels: int, block_frames: int) -> None:
        self.sink, self.channels, self.block_frames = sink, channels, block_frames
        self.active = True
        self.closed = False

    def close(self) -> None:
        self.closed = True
        self.active = False


class FakeBackend:
    name = "fake"

    def __init__(self, rates=(48000,), default: int | None = 1) -> None:
        self._devices = [
            InputDevice("fake", 0, "Monitor of Speakers", 2, 44100.0),
            InputDevice("fake", 1, "USB Microphone", 2, 48000.0),
            InputDevice("fake", 3, "USB Microphone Array", 6, 16000.0),
        ]
        self._rates = rates
        self._default = default
        self.opened: list[tuple[int, int, int, int]] = []
        self.stream: FakeStream | None = None
        self.closed = False

    def devices(self) -> list[InputDevice]:
        return self._devices

    def default_index(self) -> int | None:
        return self._default

    def supports(self, device: InputDevice, rate: int, channels: int) -> bool:
        return rate in self._rates

    def open(self, device, rate, channels, block_frames, sink):
        self.opened.append((device.index, rate, channels, block_frames))
        self.stream = FakeStream(sink, channels, block_frames)
        return self.stream

    def close(self) -> None:
        self.closed = True


def _tone_blocks(rate: int, channels: int, block: int, count: int) -> list[np.ndarray]:
    t = np.arange(block * count) / rate
    x = (0.5 * 32767 * np.sin(2 * np.pi * 1000 * t)).astype(np.int16)
    frames = np.repeat(x[:, None], channels, axis=1)  # (N, C)
    return [frames[i * block : (i + 1) * block] for i in range(count)]


def test_device_choice_by_index_name_and_default():
    be = FakeBackend()
    assert MicSource(backend=be).device.index == 1  # the default input
    assert MicSource(3, backend=be).device.name == "USB Microphone Array"
    assert MicSource("monitor", backend=be).device.index == 0
    assert MicSource("usb microphone", backend=be).device.index == 1  # an exact name wins over substrings
    with pytest.raises(DeviceError, match="matches several inputs"):
        MicSource("USB", backend=be)
    with pytest.raises(DeviceError, match=r"is not an input device.*USB Microphone Array"):
        MicSource(2, backend=be)
    with pytest.raises(DeviceError, match="no default input"):
        MicSource(backend=FakeBackend(default=None))
    with pytest.raises(DeviceError, match="3 channels asked, it has 2"):
        MicSource(1, backend=be, channels=3)
    assert [d.index for d in list_input_devices(be)] == [0, 1, 3]


def test_rate_and_channels_are_chosen_and_recorded():
    be = FakeBackend(rates=(48000,))
    mic = MicSource(1, backend=be, channel=1, block_s=0.02)
    assert be.opened[-1] == (1, 48000, 2, 960)  # 16 kHz refused -> the device's 48 kHz; 2 ch for channel 1
    c = mic.conversion
    assert (c.sample_rate, c.channels, c.sample_format, c.bits, c.channel_policy, c.resampled) == (
        48000, 2, "s16", 16, "channel 1 of 2", True,
    )
    both = FakeBackend(rates=(16000, 48000))
    MicSource(1, backend=both)
    assert both.opened[-1] == (1, 16000, 1, 320)  # 16 kHz preferred, mono asked of the device
    direct = MicSource(1, backend=FakeBackend(rates=(16000,)))
    assert not direct.conversion.resampled and direct.conversion.channel_policy == "mono"


def test_callback_thread_to_reader_equals_one_shot_conversion():
    be = FakeBackend(rates=(48000,))
    mic = MicSource(1, backend=be, channels=2, block_s=0.01, queue_s=10.0)
    blocks = _tone_blocks(48000, 2, 480, 100)

    def audio_thread() -> None:
        for b in blocks:
            be.stream.sink.put(b.copy())
            time.sleep(0.0005)

    th = threading.Thread(target=audio_thread)
    th.start()
    got = []
    while th.is_alive():
        got.append(mic.read(timeout=0.05))  # reads race the callback thread
    th.join()
    got.append(mic.read(timeout=0))
    assert sum(g.size > 0 for g in got) > 5
    reference = EdgeConverter("ref", FORMATS["s16"], 48000, 2)
    want = reference.convert(np.concatenate(blocks))
    out = np.concatenate(got)
    assert len(out) == len(want) and np.abs(out - want).max() <= 1e-6
    assert mic.dropped_blocks == 0


def test_full_queue_drops_new_blocks_and_counts_them():
    be = FakeBackend(rates=(16000,))
    mic = MicSource(1, backend=be, block_s=0.02, queue_s=0.1)  # room for 5 blocks
    blocks = _tone_blocks(16000, 1, 320, 8)
    for b in blocks:
        be.stream.sink.put(b)  # the callback never waits
    assert mic.dropped_blocks == 3
    out = mic.read(timeout=0)
    assert len(out) == 5 * 320  # everything queued, converted in one go
    assert np.array_equal(out, np.concatenate(blocks[:5])[:, 0] / np.float32(32768.0))
    assert mic.read(timeout=0).size == 0  # nothing more: empty, not None


def test_timeout_returns_empty_and_close_ends_input():
    be = FakeBackend(rates=(16000,))
    mic = MicSource(1, backend=be)
    start = time.monotonic()
    out = mic.read(timeout=0.1)
    assert out.shape == (0,) and out.dtype == np.float32
    assert 0.09 <= time.monotonic() - start < 1.0
    with mic:
        pass
    assert be.stream.closed and be.closed
    assert mic.read(timeout=0.1) is None


def test_stream_death_surfaces_as_device_lost_after_the_queue_drains():
    be = FakeBackend(rates=(16000,))
    mic = MicSource(1, backend=be)
    be.stream.sink.put(_tone_blocks(16000, 1, 320, 1)[0])
    be.stream.active = False  # the device vanished
    assert len(mic.read(timeout=0.2)) == 320  # what was captured still comes out
    with pytest.raises(DeviceLostError, match=r"fake #1 'USB Microphone'.*stream stopped"):
        mic.read(timeout=0.2)


def test_reported_failure_and_stall_surface_as_device_lost():
    be = FakeBackend(rates=(16000,))
    mic = MicSource(1, backend=be)
    be.stream.sink.fail("PortAudio error -9999: unanticipated host error")
    with pytest.raises(DeviceLostError, match="unanticipated host error"):
        mic.read()  # no timeout: still returns, by raising
    stalled = MicSource(1, backend=FakeBackend(rates=(16000,)), stall_s=0.05)
    with pytest.raises(DeviceLostError, match="no audio for"):
        stalled.read(timeout=1.0)


def test_sounddevice_callback_copies_counts_overflows_and_reports_finish():
    made = {}

    class FakeInputStream:
        def __init__(self, **kw) -> None:
            made.update(kw)
            self.active = True

        def start(self) -> None:
            made["started"] = True

    be = SoundDeviceBackend()
    be._sd = SimpleNamespace(InputStream=FakeInputStream)
    sink = CaptureQueue(4)
    dev = InputDevice("sounddevice", 7, "mic", 2, 48000.0)
    stream = be.open(dev, 48000, 2, 960, sink)
    assert made["device"] == 7 and made["dtype"] == "int16" and made["blocksize"] == 960 and made["started"]
    buf = np.ones((960, 2), np.int16)
    made["callback"](buf, 960, None, SimpleNamespace(input_overflow=True))
    buf[:] = 5  # PortAudio reuses its buffer
    assert np.all(sink.get(0) == 1) and sink.overflows == 1
    made["finished_callback"]()
    assert sink.failure == "the capture stream ended" and stream.active


def test_pyaudio_callback_decodes_bytes_and_continues():
    made = {}
    fake_pa = SimpleNamespace(paInt16=8, paContinue=0, paInputOverflow=2)

    class FakePyAudio:
        def open(self, **kw):
            made.update(kw)
            return SimpleNamespace(start_stream=lambda: made.setdefault("started", True), is_active=lambda: True)

    be = PyAudioBackend.__new__(PyAudioBackend)  # skip the real PortAudio scan
    be._pyaudio, be._pa = fake_pa, FakePyAudio()
    sink = CaptureQueue(4)
    stream = be.open(InputDevice("pyaudio", 2, "mic", 1, 44100.0), 44100, 1, 441, sink)
    assert made["input_device_index"] == 2 and made["frames_per_buffer"] == 441 and made["started"]
    data = np.arange(441, dtype="<i2").tobytes()
    assert made["stream_callback"](data, 441, {}, 2) == (None, 0)
    block = sink.get(0)
    assert block.shape == (441, 1) and block[440, 0] == 440 and sink.overflows == 1
    assert stream.active
