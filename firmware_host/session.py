"""One input session: an audio source (microphone, file or stdin) run through the engine's real-time loop.

The supervisor opens a session per (re)start of the input; the recognizer (the loaded model) is shared, each
session has its own engine stream. Decode time for the real-time factor is the decoding thread's wall time
minus the time the loop spent idle waiting for audio (its injected clock's sleeps).
"""

from __future__ import annotations

import os
import select
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ouvir.engine.audio.files import FileSource
from ouvir.engine.audio.mic import MicSource
from ouvir.engine.audio.sources import AudioSource, RawSource
from ouvir.engine.events import Event
from ouvir.engine.loop import LoopConfig, PacedSource, RealtimeLoop
from ouvir.engine.recognizer import Recognizer

INPUTS = ("mic", "file", "stdin")
MIC_BACKENDS = ("sounddevice", "pyaudio")


@dataclass(frozen=True)
class InputConfig:
    kind: str = "mic"  # one of INPUTS
    file: Path | None = None  # --input file: played at real-time pace (the loop treats every input as live)
    mic_backend: str = "sounddevice"
    device: int | str | None = None  # index, or a name substring; None = the default input
    channel: int | None = None  # keep one channel instead of the mean of all
    raw_format: str = "s16le"  # --input stdin: headerless PCM
    raw_rate: int = 16000
    raw_channels: int = 1


class _IdleClock:
    """The loop's clock; counts the time its decode side sleeps waiting for audio."""

    def __init__(self) -> None:
        self.idle_s = 0.0

    def now(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        t0 = time.monotonic()
        time.sleep(seconds)
        self.idle_s += time.monotonic() - t0


class StoppableReader:
    """stdin for RawSource (which reads with ``read1``): each ``read1`` waits at most ``poll_s`` at a time and
    reports the end of input once ``stop()`` was called, so a stdin that sends nothing cannot block shutdown."""

    def __init__(self, fd: int, poll_s: float = 0.1) -> None:
        self.fd = fd
        self.poll_s = poll_s
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def read1(self, n: int) -> bytes:
        while not self._stop.is_set():
            readable, _, _ = select.select([self.fd], [], [], self.poll_s)
            if readable:
                return os.read(self.fd, n)
        return b""


def open_source(cfg: InputConfig, stdin: StoppableReader | None) -> AudioSource:
    """Raises DeviceError when the microphone is missing or cannot be opened (the supervisor retries)."""
    if cfg.kind == "mic":
        return MicSource(cfg.device, cfg.mic_backend, channel=cfg.channel)
    if cfg.kind == "file":
        assert cfg.file is not None
        return PacedSource(FileSource(cfg.file, channel=cfg.channel))
    if cfg.kind == "stdin":
        assert stdin is not None
        return RawSource(stdin, cfg.raw_format, cfg.raw_rate, cfg.raw_channels, cfg.channel, name="raw stdin")
    raise ValueError(f"input {cfg.kind!r} is not one of {INPUTS}")


class HostSession:
    """A started source and its real-time loop (``supervisor.Session``)."""

    def __init__(self, recognizer: Recognizer, source: AudioSource, loop: LoopConfig,
                 reader: StoppableReader | None = None,
                 on_capture: Callable[[np.ndarray], None] | None = None) -> None:
        self._reader = reader
        self._clock = _IdleClock()
        self._started: float | None = None
        self.loop = RealtimeLoop(recognizer, source, loop, clock=self._clock, on_capture=on_capture)
        self.source = source.conversion.describe()

    def events(self) -> Iterator[Event]:
        """The loop's events; the loop closes the source when capture ends."""
        self._started = time.monotonic()
        yield from self.loop.run()

    def stop(self) -> None:
        self.loop.stop()
        if self._reader is not None:
            self._reader.stop()

    @property
    def decoded_s(self) -> float:
        return self.loop.decoded / self.loop.rate

    @property
    def compute_s(self) -> float:
        if self._started is None:
            return 0.0
        return max(0.0, time.monotonic() - self._started - self._clock.idle_s)
