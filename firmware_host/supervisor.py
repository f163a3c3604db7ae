"""Keeps the host running: input sessions, signals, microphone retries, and the periodic health/metrics report.

A *session* is one opened input running through the engine's real-time loop (firmware_host/session.py). The
supervisor opens one, forwards its events as protocol messages, and

* on ``DeviceError`` (a microphone is missing or cannot be opened) and ``DeviceLostError`` (it vanished while
  recording) reports ``input_lost`` and opens a new session after an exponential backoff (``BackoffConfig``),
  for as long as it takes (a USB microphone may be plugged back in);
* on SIGTERM / SIGINT asks the session to stop: it stops capturing, decodes what it has, emits the last
  ``final``; then the supervisor returns 0. A second signal exits at once (code 128 + signal);
* forwards ``Overload`` (the engine's overload policy dropped audio) into health and metrics, and reports
  ``health`` at once when the status changes, besides every ``report_interval_s``.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol, TextIO

from ouvir.engine.errors import DeviceError
from ouvir.engine.events import Event, Final, Lag, Overload, Partial
from ouvir.firmware_host import schema
from ouvir.firmware_host.monitor import HostMonitor

log = logging.getLogger("ouvir.host")

Sink = Callable[[dict[str, Any]], None]


class Session(Protocol):
    """One opened input running through the engine loop."""

    source: str  # how the input is converted (Conversion.describe())

    def events(self) -> Iterator[Event]:
        """Partial / Final / Lag / Overload until the input ends or ``stop()`` was called (the open segment is
        then flushed as a Final); raises ``DeviceLostError`` when the device goes away."""
        ...

    def stop(self) -> None:
        """Thread-safe (called from a signal handler): stop capturing and finish."""
        ...

    @property
    def decoded_s(self) -> float:
        """Stream audio decoded so far (the engine's stream time)."""
        ...

    @property
    def compute_s(self) -> float:
        """Time spent decoding so far."""
        ...


@dataclass(frozen=True)
class BackoffConfig:
    initial_s: float = 0.5
    factor: float = 2.0
    max_s: float = 30.0
    stable_after_s: float = 30.0  # a session that ran this long resets the backoff


def backoff_delay(cfg: BackoffConfig, failures: int) -> float:
    """Delay before the next attempt after ``failures`` consecutive failures (>= 1)."""
    return min(cfg.max_s, cfg.initial_s * cfg.factor ** (failures - 1))


class Outputs:
    """Numbers every message (``seq``) and hands it to each sink, one message at a time."""

    def __init__(self, sinks: list[Sink]) -> None:
        self.sinks = sinks
        self._lock = threading.Lock()
        self._seq = 0

    def emit(self, msg: dict[str, Any]) -> None:
        with self._lock:
            msg["seq"] = self._seq
            self._seq += 1
            for sink in self.sinks:
                sink(msg)


class JsonlSink:
    """JSON lines on a text stream (stdout). If the reader goes away, ``on_broken`` is called once."""

    def __init__(self, stream: TextIO, on_broken: Callable[[], None]) -> None:
        self.stream = stream
        self.on_broken = on_broken
        self.broken = False

    def __call__(self, msg: dict[str, Any]) -> None:
        if self.broken:
            return
        try:
            self.stream.write(schema.encode(msg) + "\n")
            self.stream.flush()
        except BrokenPipeError:
            self.broken = True
            # Point the stream at /dev/null so that interpreter shutdown does not fail flushing it again.
            os.dup2(os.open(os.devnull, os.O_WRONLY), self.stream.fileno())
            self.on_broken()


class Supervisor:
    def __init__(
        self,
        open_session: Callable[[], Session],
        outputs: Outputs,
        monitor: HostMonitor,
        backoff: BackoffConfig = BackoffConfig(),
        report_interval_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.open_session = open_session
        self.outputs = outputs
        self.monitor = monitor
        self.backoff = backoff
        self.report_interval_s = report_interval_s
        self.clock = clock
        self._stop = threading.Event()
        self._session: Session | None = None
        self._signals = 0
        self._segment_base = 0  # host segment number of the session's segment 0
        self._time_base = 0.0  # host audio time of the session's t = 0
        self._last_status = ""

    # ------------------------------------------------------------------ control
    def install_signal_handlers(self) -> None:
        """SIGTERM / SIGINT: flush and stop (exit 0); a second one exits at once. Call from the main thread.

        The Python-level handler does nothing; the interpreter's C handler writes the signal number to a pipe
        (``signal.set_wakeup_fd``) and a watcher thread acts on it. A handler that took locks itself could
        deadlock: it runs on the main thread between two bytecodes, possibly while that thread holds them.
        """
        read_fd, write_fd = os.pipe()
        os.set_blocking(write_fd, False)
        signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda signum, frame: None)
        threading.Thread(target=self._watch_signals, args=(read_fd,), name="ouvir-host-signals", daemon=True).start()

    def _watch_signals(self, fd: int) -> None:
        while data := os.read(fd, 16):
            for signum in data:
                self._on_signal(signum)

    def _on_signal(self, signum: int) -> None:
        self._signals += 1
        name = signal.Signals(signum).name
        if self._signals > 1:
            sys.stderr.write(f"ouvir-host: second {name}, exiting without flushing\n")
            os._exit(128 + signum)
        log.info("%s: stopping, flushing the open segment", name)
        self.request_stop()

    def request_stop(self) -> None:
        self._stop.set()
        self.monitor.set_stopping()
        session = self._session
        if session is not None:
            session.stop()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    # ------------------------------------------------------------------ the run
    def run(self) -> int:
        """Run sessions until the input ends or a stop is requested; returns the exit code (0)."""
        reporter = threading.Thread(target=self._report_loop, name="ouvir-host-report", daemon=True)
        reporter.start()
        failures = 0
        try:
            while not self.stopping:
                started = self.clock()
                try:
                    ended = self._run_session()
                except DeviceError as e:  # cannot open the device, or it went away (DeviceLostError)
                    if self.clock() - started >= self.backoff.stable_after_s:
                        failures = 0
                    failures += 1
                    delay = backoff_delay(self.backoff, failures)
                    self.monitor.session_ended("lost", str(e), delay)
                    log.warning("%s; retrying in %g s (attempt %d)", e, delay, failures)
                    self.outputs.emit(schema.error("input_lost", f"{e}; retrying in {delay:g} s"))
                    self._report_health(force=True)
                    self._stop.wait(delay)
                    continue
                if ended:
                    break
        finally:
            self._stop.set()
            reporter.join()
        self._report_health(force=True)
        self.outputs.emit(self.monitor.metrics())
        return 0

    def _run_session(self) -> bool:
        """One session; True when its input ended (file / stdin), False when stopped."""
        session = self.open_session()
        self._session = session
        if self.stopping:  # a signal arrived while the session was opening
            session.stop()
        self.monitor.session_started(session.source)
        log.info("input: %s", session.source)
        self._report_health(force=True)
        last_segment = -1
        try:
            for event in session.events():
                self.monitor.record(event)
                if isinstance(event, Partial | Final):
                    last_segment = max(last_segment, event.segment)
                    self.outputs.emit(schema.caption(event, self._segment_base + event.segment, self._time_base))
                elif isinstance(event, Overload):
                    log.warning("overload: dropped %.2f s of audio (%.2f s in all), lag %.2f s",
                                event.dropped_s, event.dropped_total_s, event.lag_s)
                    self._report_health()
                elif isinstance(event, Lag):
                    self.monitor.record_progress(session.decoded_s, session.compute_s)
        finally:
            self._session = None
            self.monitor.record_progress(session.decoded_s, session.compute_s)
            self._segment_base += last_segment + 1
            self._time_base += session.decoded_s
        ended = not self.stopping
        if ended:
            self.monitor.session_ended("ended")
        return ended

    def _report_loop(self) -> None:
        while not self._stop.wait(self.report_interval_s):
            self._report_health(force=True)
            self.outputs.emit(self.monitor.metrics())

    def _report_health(self, force: bool = False) -> None:
        """Emit health when forced or when the status changed since the last one."""
        msg = self.monitor.health()
        if force or msg["status"] != self._last_status:
            self._last_status = msg["status"]
            self.outputs.emit(msg)
