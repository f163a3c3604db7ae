"""The audio server's one batching loop: every client's stream decoded together with ``Recognizer.decode_streams``.

Clients' audio arrives on the server's thread (already 16 kHz mono float32, converted once at the edge) and waits
in each stream's bounded ``AudioQueue``. The batching thread repeats rounds: it takes up to ``feed_s`` of every
stream's queued audio, decodes the ready chunks of all streams in shared encoder calls, and hands each stream its
own events. A round gives a stream at most ``feed_s`` of audio, so a fast sender cannot starve the others.

Overload policy, per stream: a stream's queue holds at most ``max_lag_s`` of audio.
* live streams (``realtime``): the host's policy (engine/loop.py): audio beyond that bound drops the oldest
  queued audio, reported to that stream only as an ``Overload`` event;
* recordings (not ``realtime``): the server reads no more of that client's frames while its queue is full
  (``full``; TCP then pushes back on the client), so nothing is dropped.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ouvir.engine.events import Event, Overload
from ouvir.engine.loop import AudioQueue
from ouvir.engine.recognizer import Recognizer, Stream

log = logging.getLogger("ouvir.host.batcher")


@dataclass(frozen=True)
class BatchConfig:
    max_lag_s: float = 2.0  # audio a stream may have queued (see the overload policy above)
    feed_s: float = 0.5  # audio taken from each stream per round
    idle_s: float = 0.05  # longest wait for audio when no stream has any


class ServerStream:
    """One client's engine stream and queue. ``on_event`` and ``on_room`` are called on the batching thread:
    ``on_event(event)`` for each Partial / Final / Overload, ``on_event(None)`` once the last Final is out;
    ``on_room()`` when audio was taken from the queue."""

    def __init__(self, stream: Stream, capacity: int, realtime: bool,
                 on_event: Callable[[Event | None], None], on_room: Callable[[], None]) -> None:
        self.stream = stream
        self.queue = AudioQueue(capacity)
        self.realtime = realtime
        self.on_event = on_event
        self.on_room = on_room
        self.finishing = False  # the client's audio has ended
        self.closed = False  # the client is gone: the stream is discarded
        self.reported_dropped = 0  # samples dropped and reported so far

    @property
    def full(self) -> bool:
        return self.queue.queued >= self.queue.capacity


class StreamBatcher:
    """``start()``, then ``open`` / ``put`` / ``finish`` / ``close`` streams from any thread; ``stop()``."""

    def __init__(self, recognizer: Recognizer, config: BatchConfig = BatchConfig()) -> None:
        self.recognizer = recognizer
        self.config = config
        self.rate = recognizer.info.features.sample_rate
        self._streams: list[ServerStream] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.rounds = 0  # rounds that decoded audio
        self.widest = 0  # most streams fed in one round

    def open(self, realtime: bool, on_event: Callable[[Event | None], None],
             on_room: Callable[[], None]) -> ServerStream:
        capacity = max(1, round(self.config.max_lag_s * self.rate))
        s = ServerStream(self.recognizer.create_stream(), capacity, realtime, on_event, on_room)
        with self._lock:
            self._streams.append(s)
        return s

    def put(self, s: ServerStream, samples: np.ndarray) -> None:
        """Queue 16 kHz mono float32 audio (a live stream's oldest audio is dropped beyond ``max_lag_s``)."""
        if len(samples):
            s.queue.put(samples)
            self._wake.set()

    def finish(self, s: ServerStream) -> None:
        s.finishing = True
        self._wake.set()

    def close(self, s: ServerStream) -> None:
        s.closed = True
        self._wake.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="ouvir-host-batcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self.step():
                self._wake.wait(self.config.idle_s)
                self._wake.clear()

    def step(self) -> bool:
        """One round: feed every open stream, decode them together, deliver the events. False when idle."""
        with self._lock:
            self._streams = [s for s in self._streams if not s.closed]
            streams = list(self._streams)
        fed = [s for s in streams if self._feed(s)]
        if not fed:
            return False
        owners = {id(s.stream): s for s in fed}
        for stream, event in self.recognizer.decode_streams([s.stream for s in fed]):
            owners[id(stream)].on_event(event)
        for s in fed:
            if s.stream.ended:
                s.closed = True
                s.on_event(None)
        self.rounds += 1
        self.widest = max(self.widest, len(fed))
        return True

    def _feed(self, s: ServerStream) -> bool:
        """Give the stream up to ``feed_s`` of its queued audio (and its end); True if it got anything."""
        finishing = s.finishing  # read before the queue: the client queues all its audio before it ends
        blocks, n = [], 0
        while n < self.config.feed_s * self.rate and (block := s.queue.get()) is not None:
            blocks.append(block)
            n += len(block)
        if s.queue.dropped > s.reported_dropped:
            dropped = s.queue.dropped - s.reported_dropped
            s.reported_dropped = s.queue.dropped
            s.on_event(Overload(dropped / self.rate, s.queue.dropped / self.rate, s.queue.queued / self.rate,
                                s.stream.received_s))
        if blocks:
            s.stream.accept_waveform(np.concatenate(blocks), self.rate)
            s.on_room()
        end = finishing and s.queue.queued == 0 and not s.stream.finished
        if end:
            s.stream.input_finished()
        return bool(blocks) or end
