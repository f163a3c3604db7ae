"""The real-time loop: a capture thread feeds a bounded queue, the caller's thread decodes.

    source --read()--> [capture thread] --put()--> AudioQueue --get()--> [decode: run()] --> events

Capture never waits for decoding: ``AudioQueue.put`` never blocks. Lag is the audio captured but not yet
decoded (``captured_s - decoded_s``), reported every ``lag_report_s`` as a ``Lag`` event.

Overload policy: the queue holds at most ``max_lag_s`` of audio. When a new block would exceed that, the
oldest queued samples are dropped (counted, reported as an ``Overload`` event) so that recognition stays
close to live and memory stays bounded: queued audio <= ``max_lag_s``, plus the one block being decoded.
The stream sees the audio before and after a gap spliced together, and its times exclude dropped audio
(``Overload.stream_s`` says where the gap sits). The decode side takes one block at a time, so the lag
stays within ``max_lag_s`` plus one block.

``stop()`` (safe from a signal handler) ends capture and closes the source; the loop then decodes what was
already captured and ends with the last Final. Clock and source are injectable (tests use a fake clock).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ouvir.engine.audio.sources import AudioSource
from ouvir.engine.events import Event, Lag, Overload
from ouvir.engine.recognizer import Recognizer, Stream


class Clock(Protocol):
    def now(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


@dataclass(frozen=True)
class LoopConfig:
    max_lag_s: float = 2.0  # queued audio beyond this is dropped, oldest first
    lag_report_s: float = 1.0  # a Lag event at most this often (clock seconds)
    idle_s: float = 0.01  # decode side: wait when the queue is empty
    read_timeout_s: float = 0.1  # capture side: longest wait in source.read, so stop() is seen


class AudioQueue:
    """Thread-safe FIFO of audio blocks holding at most ``capacity`` samples; ``put`` drops the oldest."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"queue capacity must be at least one sample, got {capacity}")
        self.capacity = capacity
        self._blocks: deque[np.ndarray] = deque()
        self._lock = threading.Lock()
        self.queued = 0  # samples now queued
        self.dropped = 0  # samples dropped so far
        self.high_water = 0  # most samples ever queued

    def put(self, block: np.ndarray) -> None:
        with self._lock:
            if len(block) > self.capacity:
                self.dropped += len(block) - self.capacity
                block = block[-self.capacity :]
            excess = self.queued + len(block) - self.capacity
            while excess > 0:
                oldest = self._blocks[0]
                cut = min(excess, len(oldest))
                if cut == len(oldest):
                    self._blocks.popleft()
                else:
                    self._blocks[0] = oldest[cut:]
                self.queued -= cut
                self.dropped += cut
                excess -= cut
            self._blocks.append(block)
            self.queued += len(block)
            self.high_water = max(self.high_water, self.queued)

    def get(self) -> np.ndarray | None:
        """The oldest block, or None when empty."""
        with self._lock:
            if not self._blocks:
                return None
            block = self._blocks.popleft()
            self.queued -= len(block)
            return block


class RealtimeLoop:
    def __init__(
        self,
        recognizer: Recognizer,
        source: AudioSource,
        config: LoopConfig = LoopConfig(),
        clock: Clock | None = None,
        on_capture: Callable[[np.ndarray], None] | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self.recognizer = recognizer
        self.source = source
        self.config = config
        self.clock = clock or SystemClock()
        self.on_capture = on_capture  # sees every captured block, on the capture thread (e.g. --save-audio)
        self.rate = recognizer.info.features.sample_rate
        self.queue = AudioQueue(max(1, round(config.max_lag_s * self.rate)))
        self.stream: Stream = recognizer.create_stream()
        self.captured = 0  # samples captured (written by the capture thread only)
        self.decoded = 0  # samples fed to the stream and decoded
        self._stop = stop if stop is not None else threading.Event()  # capture ends: stop(), or the caller's
        self._halt = threading.Event()  # run() is over
        self._capture_done = threading.Event()
        self._capture_error: BaseException | None = None

    def stop(self) -> None:
        """End capture; ``run`` then decodes what was captured and finishes. Safe from a signal handler."""
        self._stop.set()

    def run(self) -> Iterator[Event]:
        thread = threading.Thread(target=self._capture, name="ouvir-capture", daemon=True)
        thread.start()
        try:
            yield from self._decode_until_captured()
            self.stream.input_finished()
            yield from self.recognizer.decode(self.stream)
            yield self.lag()
            if self._capture_error is not None:  # e.g. the device vanished: raised after the last Final
                raise self._capture_error
        finally:
            self._halt.set()
            thread.join()

    def lag(self) -> Lag:
        captured, decoded = self.captured, self.decoded + self.queue.dropped
        return Lag(captured / self.rate, decoded / self.rate, (captured - decoded) / self.rate)

    def _decode_until_captured(self) -> Iterator[Event]:
        reported_at, dropped = self.clock.now(), 0
        while True:
            done = self._capture_done.is_set()  # read before the queue: nothing is put after it is set
            block = self.queue.get()
            if block is None:
                if done:
                    return
                self.clock.sleep(self.config.idle_s)
            else:
                self.stream.accept_waveform(block, self.rate)
                yield from self.recognizer.decode(self.stream)
                self.decoded += len(block)
            if self.queue.dropped > dropped:
                lag = self.lag()
                yield Overload((self.queue.dropped - dropped) / self.rate, self.queue.dropped / self.rate,
                               lag.lag_s, self.stream.received_s)
                dropped = self.queue.dropped
            if self.clock.now() - reported_at >= self.config.lag_report_s:
                reported_at = self.clock.now()
                yield self.lag()

    def _capture(self) -> None:
        try:
            while not (self._stop.is_set() or self._halt.is_set()):
                block = self.source.read(self.config.read_timeout_s)
                if block is None:
                    break
                if len(block):
                    if self.on_capture is not None:
                        self.on_capture(block)
                    self.captured += len(block)
                    self.queue.put(block)
        except Exception as e:  # handed to the decode side, which raises it after the last Final
            self._capture_error = e
        finally:
            self.source.close()  # release the device as soon as capture ends
            self._capture_done.set()


class PacedSource:
    """Releases another source's blocks no faster than real time (a file played like a microphone)."""

    def __init__(self, source: AudioSource, clock: Clock | None = None, rate: int = 16000) -> None:
        self.source = source
        self.conversion = source.conversion
        self.clock = clock or SystemClock()
        self.rate = rate
        self._start: float | None = None
        self._released = 0  # samples

    def read(self, timeout: float | None = None) -> np.ndarray | None:
        if self._start is None:
            self._start = self.clock.now()
        block = self.source.read(timeout)
        if block is None:
            return None
        self._released += len(block)
        wait = self._start + self._released / self.rate - self.clock.now()
        if wait > 0:
            self.clock.sleep(wait)
        return block

    def close(self) -> None:
        self.source.close()

    def __enter__(self) -> PacedSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
