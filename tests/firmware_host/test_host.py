"""The whole ouvir-host pipeline in a subprocess (stdin input, real-time loop, recognizer, supervisor, WebSocket
server, signals), with the engine tests' scripted backend standing in for a bundle."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import soundfile as sf
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests import vmic
from tests.conftest import REPO

from .e2e_host import StderrWatch


class Host:
    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.firmware_host.fakes", "host", *args], cwd=REPO,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self._watch = StderrWatch(self.proc)
        self.stderr = self._watch.lines

    def url(self) -> str:
        return f"ws://127.0.0.1:{self._watch.port(20)}/"

    def feed(self, seconds: float) -> None:
        self.proc.stdin.write(bytes(2 * round(16000 * seconds)))  # s16le silence; the script ignores it
        self.proc.stdin.flush()

    def end_input(self) -> None:
        self.proc.stdin.close()

    def finish(self, timeout: float = 20) -> list[dict]:
        """Wait for the exit; stdout's JSON lines (stderr is collected by the drain thread)."""
        killer = threading.Timer(timeout, self.proc.kill)
        killer.start()
        try:
            out = self.proc.stdout.read()
            self.proc.wait()
        finally:
            killer.cancel()
        self._watch.join()
        return [json.loads(line) for line in out.decode().splitlines()]


def captions(messages: list[dict]) -> list[dict]:
    return [m for m in messages if m["type"] in ("partial", "final")]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_mid_stream_flushes_final_to_clients_and_stdout_then_exits_0(sig):
    host = Host("--input", "stdin", "--serve", "127.0.0.1:0", "--jsonl")
    try:
        with connect(host.url()) as ws:
            assert json.loads(ws.recv(timeout=10))["bundle"] == {"backend": "scripted"}
            host.feed(0.6)  # stdin stays open: only the signal can end this input
            received = []
            while not any(m["type"] == "partial" for m in received):
                received.append(json.loads(ws.recv(timeout=10)))
            host.proc.send_signal(sig)
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    received.append(json.loads(ws.recv(timeout=10)))
            assert closed.value.rcvd.code == 1001
        stdout = host.finish()
    finally:
        host.proc.kill()
    assert host.proc.returncode == 0, "".join(host.stderr)
    over_ws = captions(received)
    assert over_ws[-1]["type"] == "final" and over_ws[-1]["text"] == over_ws[-2]["text"]
    assert over_ws[-1]["text"].startswith("hello world")
    assert [m["type"] for m in received[-2:]] == ["metrics", "bye"]
    assert captions(stdout) == over_ws  # same messages, same seq numbers, on both outputs
    assert [m["seq"] for m in stdout] == list(range(len(stdout)))


def test_end_of_stdin_ends_the_host_with_a_final():
    host = Host("--input", "stdin")
    host.feed(1.0)
    host.end_input()
    messages = host.finish()
    assert host.proc.returncode == 0, "".join(host.stderr)
    final = captions(messages)[-1]
    assert final == {"v": 1, "type": "final", "segment": 0, "text": "hello world a b he", "start_s": 0.0,
                     "end_s": 1.0, "seq": final["seq"]}
    metrics = messages[-1]
    assert metrics["type"] == "metrics" and metrics["decoded_s"] == 1.0 and metrics["captured_s"] == 1.0
    assert messages[-2]["input"]["state"] == "ended"


def test_missing_microphone_is_reported_retried_and_sigterm_still_exits_0():
    host = Host("--input", "mic", "--device", "no-such-microphone-xyz", "--jsonl", "--report-interval", "60")
    try:
        lost = []
        for raw in host.proc.stdout:
            msg = json.loads(raw)
            if msg["type"] == "error":
                lost.append(msg)
                if len(lost) == 2:
                    break
        host.proc.send_signal(signal.SIGTERM)  # arrives during a backoff wait
        rest = host.finish(timeout=10)
    finally:
        host.proc.kill()
    assert host.proc.returncode == 0
    assert [m["code"] for m in lost] == ["input_lost", "input_lost"]
    assert "'no-such-microphone-xyz': is not an input device" in lost[0]["message"]
    assert lost[0]["message"].endswith("retrying in 0.5 s") and lost[1]["message"].endswith("retrying in 1 s")
    health = [m for m in rest if m["type"] == "health"]
    assert health[-1]["status"] == "stopping" and health[-1]["input"]["restarts"] == 2


def test_save_audio_writes_exactly_what_the_recognizer_was_given(tmp_path):
    """--save-audio over 48 kHz stereo stdin: the file holds the 16 kHz mono float blocks the loop decoded,
    across the whole input, i.e. what the engine's edge conversion makes of the PCM."""
    from ouvir.engine.audio import ArraySource

    saved = tmp_path / "captured.wav"
    rng = np.random.default_rng(0)
    pcm = (rng.standard_normal((48000 * 3 // 2, 2)) * 3000).astype("<i2")  # (n, 2) 1.5 s of noise
    host = Host("--input", "stdin", "--raw-rate", "48000", "--raw-channels", "2", "--save-audio", str(saved))
    host.proc.stdin.write(pcm.tobytes())
    host.end_input()
    messages = host.finish()
    assert host.proc.returncode == 0, "".join(host.stderr)
    audio, rate = sf.read(saved, dtype="float32")
    blocks = []
    with ArraySource(pcm, 48000) as source:
        while (block := source.read()) is not None:
            blocks.append(block)
    expected = np.concatenate(blocks)  # (n * 16000 / 48000,)
    assert rate == 16000 and sf.info(saved).subtype == "FLOAT"
    assert messages[-1]["captured_s"] == messages[-1]["decoded_s"] == pytest.approx(len(audio) / rate, abs=1e-3)
    np.testing.assert_allclose(audio, expected, atol=1e-6)


def test_unwritable_save_audio_exits_2(tmp_path):
    host = Host("--input", "stdin", "--save-audio", str(tmp_path / "no-such-dir" / "captured.wav"))
    host.end_input()
    assert host.finish() == []
    assert host.proc.returncode == 2
    assert "ouvir-host: cannot write --save-audio" in "".join(host.stderr)


def test_unreadable_file_exits_1():
    host = Host("--input", "file", "--file", "/nonexistent/talk.wav")
    assert host.finish() == []
    assert host.proc.returncode == 1
    assert "ouvir-host: input failed: file /nonexistent/talk.wav: no such file" in "".join(host.stderr)


def wait_for(messages: list[dict], start: int, kind: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [m for m in messages[start:] if m["type"] == kind]
        if found:
            return found[0]
        time.sleep(0.05)
    raise AssertionError(f"no {kind} within {timeout} s: {messages[start:][-5:]}")


@pytest.mark.mic
@pytest.mark.skipif(not vmic.available(), reason="PulseAudio tools are not installed")
def test_stalled_microphone_is_reported_and_recovered_on_a_virtual_mic():
    """The (virtual) microphone stops delivering audio: after the engine's 5 s stall limit the host reports
    input_lost and retries; when audio flows again captions resume. Then SIGTERM exits 0."""
    with vmic.VirtualMic(48000) as mic:
        proc = subprocess.Popen([sys.executable, "-m", "tests.firmware_host.fakes", "host", "--input", "mic",
                                 "--jsonl", "--report-interval", "60"], cwd=REPO, env=mic.env,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        messages: list[dict] = []
        reader = threading.Thread(target=lambda: messages.extend(json.loads(line) for line in proc.stdout))
        reader.start()
        try:
            wait_for(messages, 0, "partial", 30)
            for what, name in (("source", "vmic"), ("sink", "vspk")):
                subprocess.run(["pactl", f"suspend-{what}", name, "1"], env=mic.env, check=True)
            lost = wait_for(messages, 0, "error", 30)
            for what, name in (("source", "vmic"), ("sink", "vspk")):
                subprocess.run(["pactl", f"suspend-{what}", name, "0"], env=mic.env, check=True)
            resumed = wait_for(messages, messages.index(lost) + 1, "partial", 30)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(20) == 0
        finally:
            proc.kill()
            reader.join(5)
    assert lost["code"] == "input_lost"
    assert lost["message"].startswith("audio device sounddevice") and "no audio for" in lost["message"]
    assert lost["message"].endswith("retrying in 0.5 s")
    health = [m for m in messages if m["type"] == "health"]
    assert [h["status"] for h in health].count("input_lost") >= 1
    assert health[-1]["input"]["restarts"] >= 1 and health[-1]["status"] == "stopping"
    assert resumed["segment"] > 0  # the lost session's segment was closed; numbering went on
