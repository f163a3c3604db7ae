"""The audio server (``ouvir-host --input clients``) over real loopback WebSockets with the shipped default model
(ONNX fp32): 16 concurrent clients get exactly what ``ouvir transcribe`` gives for their files; a client that
stops reading and clients that send garbage are dropped while the others finish; auth and admission limits."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from ouvir.engine import cli
from ouvir.engine.default_model import default_model, samples
from ouvir.engine.recognizer import Recognizer
from ouvir.firmware_host import schema
from ouvir.firmware_host.access import AudioLimits, ServerConfig
from ouvir.firmware_host.audio_server import AudioServer
from ouvir.firmware_host.batcher import BatchConfig
from tests.conftest import REPO
from tests.firmware_host.e2e_host import StderrWatch

TOKEN = "t0k3n-for-tests-0123456789"
HELLO = schema.message("hello", server="ouvir-host", protocol=schema.VERSION)
CLIENTS = 16
LIMITS = AudioLimits(max_per_address=32)  # every test client comes from 127.0.0.1
BATCH = BatchConfig()


def _load_example():
    spec = importlib.util.spec_from_file_location("stream_file", REPO / "firmware_host/examples/stream_file.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


example = _load_example()


@pytest.fixture(scope="module")
def recognizer() -> Recognizer:
    model, backend = default_model("onnx", "fp32")
    return Recognizer.open(model, backend)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[Path, list[str]]:
    """16 different 16 kHz s16 WAVs (1.2 to 6.5 s, cut from the shipped samples) and what ``ouvir transcribe``
    gives for each."""
    audio = [sf.read(s.path, dtype="int16")[0] for s in samples()]
    folder = tmp_path_factory.mktemp("clips")
    paths = []
    for i in range(CLIENTS):
        x = np.concatenate([audio[i % 3], audio[(i + 1) % 3]])[: int(16000 * (1.2 + 0.35 * i))]
        paths.append(folder / f"clip{i:02d}.wav")
        sf.write(paths[-1], x, 16000, subtype="PCM_16")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main(["transcribe", *map(str, paths), "--json", "--backend", "onnx", "--precision", "fp32",
                         "--beam", "0"]) == 0  # the host runs the bundle greedy (no --decoding)
    texts: dict[Path, list[str]] = {p: [] for p in paths}
    for line in out.getvalue().splitlines():
        record = json.loads(line)
        if record["type"] == "final":
            texts[Path(record["file"])].append(record["text"])
    assert sum(map(len, texts.values())) >= CLIENTS  # the model hears something in every clip
    return texts


@pytest.fixture
def make_server(serve, recognizer):
    def make(limits: AudioLimits = LIMITS, batch: BatchConfig = BATCH, **kw) -> tuple[AudioServer, str]:
        config = ServerConfig(**{"host": "127.0.0.1", "port": 0, "max_clients": 32, **kw})
        return serve(AudioServer(config, HELLO, recognizer, limits, batch))

    return make


def _stream(url: str, i: int, path: Path, **kw) -> list[str]:
    """Client i: s16le or f32le, frames of 20 to 250 ms, as fast as the server takes them."""
    fmt = ("s16le", "f32le")[i % 2]
    return example.stream(url, str(path), fmt=fmt, frame_ms=(20, 50, 100, 250)[i % 4], **kw)


def test_sixteen_concurrent_clients_get_what_transcribe_gives(make_server, clips):
    server, url = make_server()
    with ThreadPoolExecutor(CLIENTS) as pool:
        got = list(pool.map(lambda a: _stream(url, *a), enumerate(clips)))
    assert got == list(clips.values())
    assert server.batcher.widest > 1, "the clients' chunks never shared a round"
    assert server.stats.accepted == CLIENTS and server.stats.dropped_slow == 0


def test_a_client_that_stops_reading_and_clients_that_send_garbage_are_dropped(make_server, clips):
    server, url = make_server(queue_messages=8, socket_send_buffer=4096, close_timeout_s=0.5)
    port = int(url.rsplit(":", 1)[1].strip("/"))
    start = json.dumps({"v": 1, "type": "start", "format": "f32le", "rate": 16000, "realtime": False})
    good = list(clips.items())[:6]

    def stalled() -> str:
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        with connect(url, sock=sock, max_queue=1, close_timeout=0.5) as ws:
            ws.send(start)
            frame = np.zeros(1600, np.float32).tobytes()
            deadline = time.monotonic() + 30
            try:
                while time.monotonic() < deadline:  # audio and pings, never reading a reply
                    ws.send(frame)
                    for _ in range(20):
                        ws.send(json.dumps({"v": 1, "type": "ping", "id": 0}))
            except ConnectionClosed:
                return "dropped"
        return "never dropped"

    def garbage(frames: list[str | bytes]) -> tuple[str, int]:
        with connect(url) as ws:
            assert json.loads(ws.recv(timeout=5)) == HELLO
            for frame in frames:
                ws.send(frame)
            while (msg := json.loads(ws.recv(timeout=10)))["type"] != "error":
                pass
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=5)
            return msg["code"], closed.value.rcvd.code

    with ThreadPoolExecutor(10) as pool:
        stuck = pool.submit(stalled)
        bad = [pool.submit(garbage, frames) for frames in (
            [start, b"\x00\x01\x02"],  # not a whole number of f32 samples
            [start, np.full(160, np.nan, np.float32).tobytes()],
            [start, np.zeros(160, np.float32).tobytes(), "not json"],
            [b"\x00\x00"],  # audio before start
        )]
        finished = [pool.submit(_stream, url, i, path) for i, (path, _) in enumerate(good)]
        assert [f.result(timeout=60) for f in finished] == [texts for _, texts in good]
        assert [b.result(timeout=30) for b in bad] == [("bad_audio", 1008), ("bad_audio", 1008),
                                                      ("bad_json", 1008), ("bad_request", 1008)]
        assert stuck.result(timeout=60) == "dropped"
    assert server.stats.dropped_slow == 1
    assert server.stats.rejected_protocol == 4


def test_a_live_client_that_sends_too_fast_loses_its_oldest_audio_and_is_told(make_server):
    server, url = make_server(batch=BatchConfig(max_lag_s=0.5))
    server.batcher.stop()  # nothing is decoded: the client's 3 s pile up
    with connect(url) as ws:
        assert json.loads(ws.recv(timeout=5)) == HELLO
        ws.send(json.dumps({"v": 1, "type": "start", "format": "s16le", "rate": 48000, "channels": 2}))
        health = json.loads(ws.recv(timeout=5))
        assert health["status"] == "ok" and health["seq"] == 0
        assert health["input"]["source"].startswith("client 127.0.0.1:")
        assert "48000 -> 16000 Hz" in health["input"]["source"] and "mean of 2" in health["input"]["source"]
        assert health["overload"] == {"policy": "drop_oldest beyond 0.5 s of lag", "events": 0,
                                      "dropped_audio_s": 0.0}
        for _ in range(30):
            ws.send(np.zeros((4800, 2), np.int16).tobytes())  # 100 ms
        ws.send(json.dumps({"v": 1, "type": "ping", "id": "sync"}))
        assert json.loads(ws.recv(timeout=5))["type"] == "pong"
        server.batcher.step()
        health = json.loads(ws.recv(timeout=5))
    assert health["status"] == "overloaded" and health["overload"]["events"] == 1
    assert 2.4 <= health["overload"]["dropped_audio_s"] <= 2.6


def test_token_and_admission_limits(make_server):
    server, url = make_server(host="0.0.0.0", token=TOKEN, max_clients=3, limits=AudioLimits(max_per_address=2))
    for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789"}):
        with pytest.raises(InvalidStatus) as refused:
            connect(url, additional_headers=headers)
        assert refused.value.response.status_code == 401
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with connect(url, additional_headers=auth) as a, connect(url + f"?token={TOKEN}") as b:
        assert json.loads(a.recv(timeout=5)) == json.loads(b.recv(timeout=5)) == HELLO
        with pytest.raises(InvalidStatus) as refused:
            connect(url, additional_headers=auth)
        assert refused.value.response.status_code == 429
    assert server.stats.by_status == {401: 2, 429: 1}


def test_a_client_that_never_starts_is_closed(make_server):
    _, url = make_server(limits=AudioLimits(max_per_address=32, start_timeout_s=0.3))
    with connect(url) as ws:
        assert json.loads(ws.recv(timeout=5)) == HELLO
        t0 = time.monotonic()
        msg = json.loads(ws.recv(timeout=5))
        assert msg["type"] == "error" and "no start message" in msg["message"]
        assert time.monotonic() - t0 < 2
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=5)
        assert closed.value.rcvd.code == 1008


def test_ouvir_host_serves_clients_and_the_example_prints_what_transcribe_prints(clips):
    model, _ = default_model("onnx", "fp32")
    host = subprocess.Popen([sys.executable, "-m", "ouvir.firmware_host.cli", str(model), "--input", "clients",
                             "--serve", "127.0.0.1:0", "--threads", "1"], stderr=subprocess.PIPE, text=True)
    try:
        watch = StderrWatch(host)
        url = f"ws://127.0.0.1:{watch.port(timeout=60)}/"
        path, texts = next(iter(clips.items()))
        client = subprocess.run([sys.executable, str(REPO / "firmware_host/examples/stream_file.py"), str(path),
                                 "--url", url], capture_output=True, text=True, timeout=60)
        assert client.returncode == 0, client.stderr
        assert client.stdout.splitlines() == texts
        host.send_signal(signal.SIGTERM)
        assert host.wait(timeout=30) == 0
    finally:
        host.kill()
        host.wait()
