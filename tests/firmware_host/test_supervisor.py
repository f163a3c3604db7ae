"""The supervisor with scripted sessions: microphone loss and backoff, overload reporting, periodic health and
metrics, stopping with a flushed final, and SIGTERM / SIGINT on a real process."""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import sys
import threading
import time

import pytest

from ouvir.engine.errors import DeviceError, DeviceLostError
from ouvir.engine.events import Final, Lag, Overload, Partial
from ouvir.firmware_host.monitor import HostMonitor
from ouvir.firmware_host.supervisor import BackoffConfig, Outputs, Supervisor, backoff_delay
from tests.conftest import REPO
from tests.firmware_host.fakes import FakeSession


def run_supervisor(opens, backoff=None, report_interval_s=60.0, stop_after=None):
    """Run a supervisor whose n-th session comes from opens[n] (a FakeSession or an exception to raise)."""
    messages: list[dict] = []
    opened_at: list[float] = []
    pending = list(opens)

    def open_session():
        opened_at.append(time.monotonic())
        item = pending.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    sup = Supervisor(open_session, Outputs([messages.append]), HostMonitor("drop_oldest"), backoff or BackoffConfig(),
                     report_interval_s)
    if stop_after is not None:
        threading.Timer(stop_after, sup.request_stop).start()
    code = sup.run()
    return code, messages, opened_at


def of_type(messages, *types):
    return [m for m in messages if m["type"] in types]


def test_backoff_delays_grow_exponentially_and_are_capped():
    cfg = BackoffConfig(initial_s=0.5, factor=2.0, max_s=5.0)
    assert [backoff_delay(cfg, n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]


def test_missing_microphone_is_reported_and_retried_with_backoff():
    backoff = BackoffConfig(initial_s=0.02, factor=2.0, max_s=0.05)
    opens = [DeviceError("sounddevice default", "there is no default input device")] * 3 + [
        FakeSession([Partial("hi", 0, 0.0), Final("hi", 0, 0.0, 0.5, ())])]
    code, messages, opened_at = run_supervisor(opens, backoff)
    assert code == 0
    errors = of_type(messages, "error")
    assert [e["code"] for e in errors] == ["input_lost"] * 3
    assert errors[0]["message"] == ("audio device sounddevice default: there is no default input device; "
                                    "retrying in 0.02 s")
    lost = [m for m in of_type(messages, "health") if m["status"] == "input_lost"]
    assert [m["input"]["retry_in_s"] for m in lost] == [0.02, 0.04, 0.05]
    assert [m["input"]["restarts"] for m in lost] == [1, 2, 3]
    gaps = [b - a for a, b in itertools.pairwise(opened_at)]
    assert all(g >= d for g, d in zip(gaps, [0.02, 0.04, 0.05], strict=True)), gaps
    running = [m for m in of_type(messages, "health") if m["input"]["state"] == "running"]
    assert running[0]["status"] == "ok" and running[0]["input"]["source"] == "fake mic"
    assert [m["text"] for m in of_type(messages, "final")] == ["hi"]
    assert [m["seq"] for m in messages] == list(range(len(messages)))


def test_device_lost_mid_stream_restarts_and_keeps_numbering():
    first = FakeSession([Partial("a", 0, 0.0), Final("a", 0, 0.0, 0.4, ()), Partial("b", 1, 0.5),
                         Final("b", 1, 0.5, 0.9, ()), DeviceLostError("mic #3 'USB'", "the capture stream ended")])
    second = FakeSession([Partial("c", 0, 0.2), Final("c", 0, 0.2, 0.7, ())])
    code, messages, _ = run_supervisor([first, second], BackoffConfig(initial_s=0.01))
    assert code == 0
    finals = of_type(messages, "final")
    # The second session's segment 0 is the host's segment 2; its times follow the 2 s the first one decoded.
    assert [(f["segment"], f["text"], f["start_s"], f["end_s"]) for f in finals] == [
        (0, "a", 0.0, 0.4), (1, "b", 0.5, 0.9), (2, "c", 2.2, 2.7)]
    lost = of_type(messages, "error")[0]
    assert lost["message"] == "audio device mic #3 'USB': the capture stream ended; retrying in 0.01 s"
    last_metrics = of_type(messages, "metrics")[-1]
    assert last_metrics["decoded_s"] == 3.0 and last_metrics["input_restarts"] == 1
    assert last_metrics["finals"] == 3 and last_metrics["partials"] == 3


def test_overload_is_reported_at_once_in_health_and_metrics():
    session = FakeSession([Partial("x", 0, 0.0), Lag(1.0, 0.5, 0.5),
                           Overload(dropped_s=0.8, dropped_total_s=0.8, lag_s=0.2, stream_s=0.5),
                           Overload(dropped_s=0.4, dropped_total_s=1.2, lag_s=0.2, stream_s=1.0)])
    _, messages, _ = run_supervisor([session])
    health = of_type(messages, "health")
    # running/ok, then overloaded at once (only one message for two overloads: status changes only), final report.
    assert [h["status"] for h in health] == ["ok", "overloaded", "overloaded"]
    assert health[1]["overload"] == {"policy": "drop_oldest", "events": 1, "dropped_audio_s": 0.8}
    assert health[-1]["overload"] == {"policy": "drop_oldest", "events": 2, "dropped_audio_s": 1.2}
    assert of_type(messages, "metrics")[-1]["dropped_audio_s"] == 1.2


def test_periodic_reports_and_stop_flushes_the_open_segment():
    session = FakeSession([], until_stopped=True, period_s=0.01, step_s=0.04)
    code, messages, _ = run_supervisor([session], report_interval_s=0.05, stop_after=0.4)
    assert code == 0
    metrics = of_type(messages, "metrics")
    assert len(metrics) >= 4
    uptimes = [m["uptime_s"] for m in metrics]
    assert uptimes == sorted(uptimes) and uptimes[-1] >= 0.4
    assert all(m["rtf"] == pytest.approx(0.25) for m in metrics if m["rtf"] is not None)
    assert metrics[-1]["lag_s"] == 0.1
    captions = of_type(messages, "partial", "final")
    assert captions[-1]["type"] == "final"
    assert captions[-1]["text"] == captions[-2]["text"] and captions[-1]["text"].startswith("w0 w1")
    assert of_type(messages, "health")[-1]["status"] == "stopping"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_mid_stream_flushes_a_final_and_exits_0(sig):
    proc = subprocess.Popen([sys.executable, "-m", "tests.firmware_host.fakes", "session"], cwd=REPO,
                            stdout=subprocess.PIPE, text=True)
    lines = []
    for line in proc.stdout:
        lines.append(json.loads(line))
        if sum(m["type"] == "partial" for m in lines) == 3:
            break
    proc.send_signal(sig)
    rest, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0
    lines += [json.loads(line) for line in rest.splitlines()]
    captions = of_type(lines, "partial", "final")
    assert captions[-1]["type"] == "final"
    assert captions[-1]["text"] == captions[-2]["text"]
    assert len(captions[-1]["text"].split()) >= 3


def test_second_signal_exits_at_once_when_flushing_hangs():
    proc = subprocess.Popen([sys.executable, "-m", "tests.firmware_host.fakes", "session", "stuck"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in proc.stdout:
        if json.loads(line)["type"] == "partial":
            break
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    assert proc.poll() is None  # still "flushing"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 128 + signal.SIGTERM
    assert "second SIGTERM, exiting without flushing" in err
