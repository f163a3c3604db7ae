"""Health and metrics of a running host: what the engine reported (lag, overload, captions), the input's
state and the clients. Thread-safe: the decoding thread records, the reporter thread builds the messages.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ouvir.engine.events import Event, Final, Lag, Overload, Partial
from ouvir.firmware_host import schema

_PAGE = os.sysconf("SC_PAGE_SIZE")
OVERLOAD_HOLD_S = 10.0  # health stays "overloaded" this long after the last Overload event


def rss_bytes() -> int:
    """Resident set size of this process (Linux /proc)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE


@dataclass(frozen=True)
class ClientStats:
    connected: int
    dropped_slow: int
    rejected: int


class HostMonitor:
    """Counters and state behind the ``health`` and ``metrics`` messages.

    Session figures (lag, captured/decoded audio, dropped audio, compute time) are the running session's
    totals; they are added to the totals of earlier sessions (input restarts) when a session ends.
    """

    def __init__(self, overload_policy: str, clock: Callable[[], float] = time.monotonic,
                 clients: Callable[[], ClientStats] | None = None) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._clients = clients
        self.overload_policy = overload_policy
        self.started = clock()
        self.stopping = False
        self.input_state = "starting"  # starting | running | lost | ended
        self.input_source: str | None = None
        self.input_error: str | None = None
        self.retry_in_s: float | None = None
        self.restarts = 0
        self.partials = 0
        self.finals = 0
        self.overloads = 0
        self.last_overload: float | None = None
        self._base = {"captured_s": 0.0, "decoded_s": 0.0, "dropped_s": 0.0, "compute_s": 0.0}
        self._session = dict.fromkeys(self._base, 0.0)
        self.lag_s = 0.0
        self._lag_max_s = 0.0
        self._window = (self.started, 0.0, 0.0)  # (time, decoded_s, compute_s) at the last metrics report

    # ------------------------------------------------------------------ recording (decoding thread)
    def record(self, event: Event) -> None:
        with self._lock:
            if isinstance(event, Partial):
                self.partials += 1
            elif isinstance(event, Final):
                self.finals += 1
            elif isinstance(event, Lag):
                self._session["captured_s"] = event.captured_s
                self.lag_s = event.lag_s
                self._lag_max_s = max(self._lag_max_s, event.lag_s)
            elif isinstance(event, Overload):
                self.overloads += 1
                self.last_overload = self._clock()
                self._session["dropped_s"] = event.dropped_total_s
                self.lag_s = event.lag_s

    def record_progress(self, decoded_s: float, compute_s: float) -> None:
        """The running session's stream audio decoded and time spent decoding it (the real-time factor)."""
        with self._lock:
            self._session["decoded_s"] = decoded_s
            self._session["compute_s"] = compute_s

    def session_started(self, source: str) -> None:
        with self._lock:
            self.input_state, self.input_source, self.input_error, self.retry_in_s = "running", source, None, None

    def set_stopping(self) -> None:
        with self._lock:
            self.stopping = True

    def session_ended(self, state: str, error: str | None = None, retry_in_s: float | None = None) -> None:
        """Fold the session's totals into the host's; ``state`` is 'lost' (will retry) or 'ended'."""
        with self._lock:
            for k, v in self._session.items():
                self._base[k] += v
            self._session = dict.fromkeys(self._base, 0.0)
            self.lag_s = 0.0
            self.input_state, self.input_error, self.retry_in_s = state, error, retry_in_s
            if state == "lost":
                self.restarts += 1

    # ------------------------------------------------------------------ reporting (any thread)
    def status(self) -> str:
        with self._lock:
            return self._status()

    def _status(self) -> str:
        if self.stopping:
            return "stopping"
        if self.input_state == "lost":
            return "input_lost"
        if self.last_overload is not None and self._clock() - self.last_overload < OVERLOAD_HOLD_S:
            return "overloaded"
        return "ok"

    def _total(self, key: str) -> float:
        return self._base[key] + self._session[key]

    def health(self) -> dict[str, Any]:
        with self._lock:
            return schema.message(
                "health",
                status=self._status(),
                uptime_s=round(self._clock() - self.started, 3),
                input={"state": self.input_state, "source": self.input_source, "error": self.input_error,
                       "retry_in_s": self.retry_in_s, "restarts": self.restarts},
                overload={"policy": self.overload_policy, "events": self.overloads,
                          "dropped_audio_s": round(self._total("dropped_s"), 3)},
            )

    def metrics(self) -> dict[str, Any]:
        """The ``metrics`` message; ``rtf`` and ``lag_max_s`` cover the time since the previous call."""
        clients = self._clients() if self._clients else ClientStats(0, 0, 0)
        with self._lock:
            now = self._clock()
            decoded, compute = self._total("decoded_s"), self._total("compute_s")
            t0, decoded0, compute0 = self._window
            rtf = (compute - compute0) / (decoded - decoded0) if decoded > decoded0 else None
            msg = schema.message(
                "metrics",
                uptime_s=round(now - self.started, 3),
                window_s=round(now - t0, 3),
                captured_s=round(self._total("captured_s"), 3),
                decoded_s=round(decoded, 3),
                lag_s=round(self.lag_s, 3),
                lag_max_s=round(self._lag_max_s, 3),
                rtf=None if rtf is None else round(rtf, 4),
                dropped_audio_s=round(self._total("dropped_s"), 3),
                overloads=self.overloads,
                partials=self.partials,
                finals=self.finals,
                input_restarts=self.restarts,
                clients=clients.connected,
                clients_dropped=clients.dropped_slow,
                clients_rejected=clients.rejected,
                rss_mib=round(rss_bytes() / 2**20, 1),
            )
            self._window = (now, decoded, compute)
            self._lag_max_s = self.lag_s
            return msg
