"""Microphone capture: a backend callback fills a bounded queue; ``read()`` converts at the edge.

The audio callback never blocks: when the queue is full the new block is dropped and counted. Samples
are captured as s16 and converted (downmix, resampling to 16 kHz) on the reading thread.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ..errors import DeviceError, DeviceLostError
from .edge import MODEL_RATE, EdgeConverter
from .pcm import FORMATS

CAPTURE_FORMAT = FORMATS["s16"]


@dataclass(frozen=True)
class InputDevice:
    backend: str  # "sounddevice" | "pyaudio"
    index: int  # the backend's device index
    name: str
    max_input_channels: int
    default_samplerate: float

    def label(self) -> str:
        return f"{self.backend} #{self.index} {self.name!r}"


class CaptureQueue:
    """The hand-over between the audio callback thread and the reader. Bounded; ``put`` never blocks."""

    def __init__(self, max_blocks: int) -> None:
        self._queue: queue.Queue[np.ndarray] = queue.Queue(maxsize=max_blocks)
        self._lock = threading.Lock()
        self.dropped_blocks = 0  # blocks lost because the reader fell behind
        self.overflows = 0  # input overflows the device reported
        self.last_put = time.monotonic()
        self.failure: str | None = None  # why the stream stopped on its own

    def put(self, block: np.ndarray) -> None:
        """Callback side: hand over a (frames, channels) block the caller no longer touches."""
        self.last_put = time.monotonic()
        try:
            self._queue.put_nowait(block)
        except queue.Full:
            with self._lock:
                self.dropped_blocks += 1

    def overflow(self) -> None:
        with self._lock:
            self.overflows += 1

    def fail(self, reason: str) -> None:
        """The stream ended without being asked to (device unplugged, server gone, callback error)."""
        if self.failure is None:
            self.failure = reason

    def get(self, timeout: float) -> np.ndarray | None:
        """Reader side: the next block, or None if none came within ``timeout`` seconds."""
        try:
            return self._queue.get(timeout=timeout) if timeout > 0 else self._queue.get_nowait()
        except queue.Empty:
            return None

    def drain(self) -> list[np.ndarray]:
        blocks = []
        while (block := self.get(0)) is not None:
            blocks.append(block)
        return blocks


class MicStream(Protocol):
    """A started capture stream as a backend returns it."""

    @property
    def active(self) -> bool: ...

    def close(self) -> None: ...


class MicBackend(Protocol):
    name: str

    def devices(self) -> list[InputDevice]: ...

    def default_index(self) -> int | None: ...

    def supports(self, device: InputDevice, rate: int, channels: int) -> bool: ...

    def open(
        self, device: InputDevice, rate: int, channels: int, block_frames: int, sink: CaptureQueue
    ) -> MicStream: ...

    def close(self) -> None: ...


def open_backend(backend: str | MicBackend) -> MicBackend:
    if not isinstance(backend, str):
        return backend
    from .mic_backends import BACKENDS  # imports sounddevice / pyaudio lazily

    if backend not in BACKENDS:
        raise ValueError(f"unknown audio backend {backend!r}; expected one of {sorted(BACKENDS)}")
    return BACKENDS[backend]()


def list_input_devices(backend: str | MicBackend = "sounddevice") -> list[InputDevice]:
    """Devices that can record, as the backend sees them."""
    be = open_backend(backend)
    try:
        return be.devices()
    finally:
        if isinstance(backend, str):
            be.close()


def find_input_device(be: MicBackend, device: int | str | None) -> InputDevice:
    """By index, by (case-insensitive) name substring — an exact name wins — or the default input."""
    devices = be.devices()
    known = ", ".join(d.label() for d in devices) or "none"
    if device is None:
        index = be.default_index()
        if index is None:
            raise DeviceError(f"{be.name} default", f"there is no default input device (inputs: {known})")
        device = index
    if isinstance(device, int):
        found = [d for d in devices if d.index == device]
    else:
        exact = [d for d in devices if d.name.lower() == device.lower()]
        found = exact or [d for d in devices if device.lower() in d.name.lower()]
    if len(found) != 1:
        why = "matches several inputs" if found else "is not an input device"
        raise DeviceError(f"{be.name} {device!r}", f"{why} (inputs: {known})")
    return found[0]


class MicSource:
    """A microphone as an AudioSource: ``read()`` returns 16 kHz mono float32 blocks.

    rate None: 16 kHz if the device takes it, else its default rate. channels None: 1, or enough for
    ``channel``. ``stall_s``: a stream that is running but delivers nothing this long counts as lost.
    """

    def __init__(
        self,
        device: int | str | None = None,
        backend: str | MicBackend = "sounddevice",
        rate: int | None = None,
        channels: int | None = None,
        channel: int | None = None,
        block_s: float = 0.02,
        queue_s: float = 2.0,
        quality: str = "HQ",
        stall_s: float = 5.0,
    ) -> None:
        self._backend = open_backend(backend)
        try:
            self.device = find_input_device(self._backend, device)
            channels = channels or (1 if channel is None else channel + 1)
            if channels > self.device.max_input_channels:
                raise DeviceError(
                    self.device.label(), f"{channels} channels asked, it has {self.device.max_input_channels}"
                )
            if rate is None:
                ok = self._backend.supports(self.device, MODEL_RATE, channels)
                rate = MODEL_RATE if ok else round(self.device.default_samplerate)
            self.edge = EdgeConverter(f"mic {self.device.label()}", CAPTURE_FORMAT, rate, channels, channel,
                                      quality=quality)
            self.conversion = self.edge.conversion
            self.sink = CaptureQueue(max(2, math.ceil(queue_s / block_s)))
            self.stall_s = stall_s
            self._closed = False
            try:
                self._stream = self._backend.open(self.device, rate, channels, round(block_s * rate), self.sink)
            except Exception as e:  # each backend raises its own types (PortAudioError, OSError, ...)
                raise DeviceError(self.device.label(), f"cannot open at {rate} Hz, {channels} ch: {e}") from e
        except BaseException:
            self._backend.close()
            raise

    @property
    def dropped_blocks(self) -> int:
        return self.sink.dropped_blocks

    @property
    def overflows(self) -> int:
        return self.sink.overflows

    @property
    def clipped_samples(self) -> int:
        return self.edge.clipped_samples

    def read(self, timeout: float | None = None) -> np.ndarray | None:
        """All captured audio so far, converted (empty if nothing came within ``timeout``); None once closed.

        Raises DeviceLostError once the queue is empty and the stream has died or stalled.
        """
        if self._closed:
            return None
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = 0.05 if deadline is None else min(0.05, max(0.0, deadline - time.monotonic()))
            first = self.sink.get(wait)
            if first is not None:
                blocks = [first, *self.sink.drain()]
                return self.edge.convert(np.concatenate(blocks) if len(blocks) > 1 else first)
            self._check_alive()
            if deadline is not None and time.monotonic() >= deadline:
                return np.zeros(0, dtype=np.float32)

    def _check_alive(self) -> None:
        if self.sink.failure is not None:
            raise DeviceLostError(self.device.label(), self.sink.failure)
        if not self._stream.active:
            raise DeviceLostError(self.device.label(), "the capture stream stopped")
        silent = time.monotonic() - self.sink.last_put
        if silent > self.stall_s:
            raise DeviceLostError(self.device.label(), f"no audio for {silent:.1f} s")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._stream.close()
        finally:
            self._backend.close()

    def __enter__(self) -> MicSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
