"""Hosts without a model, for tests.

* ``FakeSession``: a scripted input session (no model, no audio device) for supervisor tests;
  ``python -m tests.firmware_host.fakes session`` runs a supervisor on one, printing JSON lines.
* ``python -m tests.firmware_host.fakes host [ouvir-host options]``: the real ``ouvir-host`` pipeline (input,
  real-time loop, recognizer, supervisor, server, signals) with the engine tests' scripted backend in place
  of a bundle: it emits a token every other encoder frame, whatever the audio.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Iterator

from ouvir.engine.errors import DeviceLostError
from ouvir.engine.events import Event, Final, Lag, Partial
from ouvir.engine.recognizer import Recognizer
from ouvir.firmware_host.cli import build_parser, configs, host
from ouvir.firmware_host.monitor import HostMonitor
from ouvir.firmware_host.supervisor import JsonlSink, Outputs, Supervisor
from tests.engine.fakes import VOCABULARY, ScriptedBackend


class FakeSession:
    """Yields ``script`` (events, or a DeviceLostError to raise); then, if ``until_stopped``, a Partial every
    ``period_s`` until ``stop()``, and finally the flushed Final of the open segment."""

    def __init__(self, script: list[Event | DeviceLostError], until_stopped: bool = False, period_s: float = 0.01,
                 source: str = "fake mic", step_s: float = 0.5) -> None:
        self.script = script
        self.until_stopped = until_stopped
        self.period_s = period_s
        self.source = source
        self.step_s = step_s  # stream audio per event
        self.decoded_s = 0.0
        self.compute_s = 0.0
        self.stopped = threading.Event()

    def stop(self) -> None:
        self.stopped.set()

    def events(self) -> Iterator[Event]:
        for item in self.script:
            if isinstance(item, DeviceLostError):
                raise item
            self._advance()
            yield item
        if not self.until_stopped:
            return
        words: list[str] = []
        while not self.stopped.wait(self.period_s):
            self._advance()
            words.append(f"w{len(words)}")
            yield Partial(" ".join(words), 0, 0.0)
            yield Lag(self.decoded_s + 0.1, self.decoded_s, 0.1)
        yield Final(" ".join(words), 0, 0.0, self.decoded_s, ())

    def _advance(self) -> None:
        self.decoded_s += self.step_s
        self.compute_s += self.step_s * 0.25


def session_main(stuck: bool) -> int:
    """``stuck``: the session never finishes (a first signal cannot end the host, a second one does)."""
    outputs = Outputs([])
    session = FakeSession([], until_stopped=True)
    if stuck:
        session.stopped = threading.Event()  # stop() sets the old one; this one is never set
        session.stop = lambda: None
    supervisor = Supervisor(lambda: session, outputs, HostMonitor("drop_oldest"), report_interval_s=60)
    outputs.sinks.append(JsonlSink(sys.stdout, supervisor.request_stop))
    supervisor.install_signal_handlers()
    return supervisor.run()


def host_main(argv: list[str]) -> int:
    args = build_parser().parse_args(["unused-bundle", *argv])
    logging.basicConfig(stream=sys.stderr, level="INFO", format="%(levelname)s %(message)s")
    input_cfg, server_cfg = configs(args)
    script = {frame: [1 + (frame // 2) % (len(VOCABULARY) - 1)] for frame in range(0, 100_000, 2)}
    recognizer = Recognizer(ScriptedBackend(script), "rnnt")
    return host(args, input_cfg, server_cfg, recognizer, {"backend": "scripted"})


if __name__ == "__main__":
    sys.exit(session_main(sys.argv[2:] == ["stuck"]) if sys.argv[1] == "session" else host_main(sys.argv[2:]))
