"""ouvir-host on a real ONNX bundle (the NeMo fixture model, exported by ouvir.export), in a subprocess that
cannot import torch: the same text as the engine's Recognizer, captions over WebSocket, SIGTERM mid-stream."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from ouvir.engine.bench.host import peak_rss_mib
from ouvir.engine.default_model import root, samples
from ouvir.engine.recognizer import Recognizer
from tests.conftest import REPO

from .conftest import LOOKAHEAD_MS
from .e2e_host import StderrWatch

TEXT = "the quick brown fox jumps over the lazy dog"


@pytest.fixture(scope="module")
def pcm(nemo_dir) -> bytes:
    x, rate = sf.read(nemo_dir / "test_audio.wav", dtype="int16")
    assert rate == 16000 and x.ndim == 1
    return x.astype("<i2").tobytes()


@pytest.fixture(scope="module")
def torchless(tmp_path_factory) -> dict[str, str]:
    shim = tmp_path_factory.mktemp("torchless")
    (shim / "sitecustomize.py").write_text('import sys\nsys.modules["torch"] = None\n')
    return {"PYTHONPATH": str(shim), "PATH": "/usr/bin:/bin"}


def start_host(bundle, env, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "ouvir.firmware_host.cli", str(bundle), "--input", "stdin", "--max-lag-s", "30",
         "--lookahead-ms", str(LOOKAHEAD_MS), *args], cwd=REPO, env=env,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_host_text_matches_the_engine_without_torch(onnx_bundle, pcm, torchless, nemo_dir):
    rec = Recognizer.open(onnx_bundle, lookahead_ms=LOOKAHEAD_MS)
    stream = rec.create_stream()
    stream.accept_waveform(np.frombuffer(pcm, "<i2").astype(np.float32) / 32768, 16000)
    stream.input_finished()
    engine_finals = [e.text for e in rec.decode(stream) if type(e).__name__ == "Final"]
    assert engine_finals == [TEXT]

    proc = start_host(onnx_bundle, torchless, "--jsonl")
    out, err = proc.communicate(pcm, timeout=60)  # all of it, then end of input
    assert proc.returncode == 0, err.decode()
    messages = [json.loads(line) for line in out.decode().splitlines()]
    finals = [m for m in messages if m["type"] == "final"]
    assert [f["text"] for f in finals] == engine_finals
    assert finals[0]["start_s"] == 0.0 and finals[0]["end_s"] == 8.0
    partials = [m["text"] for m in messages if m["type"] == "partial"]
    assert len(partials) >= 5 and all(TEXT.startswith(p) for p in partials)
    assert messages[-1]["type"] == "metrics" and messages[-1]["decoded_s"] == 8.0


def test_sigterm_mid_stream_flushes_the_final_to_a_websocket_client(onnx_bundle, pcm, torchless):
    t0 = time.monotonic()
    proc = start_host(onnx_bundle, torchless, "--serve", "127.0.0.1:0")
    watch = StderrWatch(proc)
    try:
        port = watch.port(60)
        boot_s = time.monotonic() - t0
        with connect(f"ws://127.0.0.1:{port}/") as ws:
            hello = json.loads(ws.recv(timeout=10))
            assert hello["bundle"]["backend"] == "onnx" and hello["bundle"]["lookahead_ms"] == LOOKAHEAD_MS
            fed = time.monotonic()
            proc.stdin.write(pcm[: 2 * 16000 * 3])  # the first 3 s; stdin stays open
            proc.stdin.flush()
            received = []
            while not any(m["type"] == "partial" for m in received):
                received.append(json.loads(ws.recv(timeout=20)))
            first_partial_s = time.monotonic() - fed
            rss = peak_rss_mib(proc.pid)
            time.sleep(0.3)
            proc.send_signal(signal.SIGTERM)
            with pytest.raises(ConnectionClosed):
                while True:
                    received.append(json.loads(ws.recv(timeout=20)))
        assert proc.wait(timeout=20) == 0, watch.text()
    finally:
        proc.kill()
    finals = [m for m in received if m["type"] == "final"]
    assert len(finals) == 1 and finals[0]["text"].startswith("the quick") and TEXT.startswith(finals[0]["text"])
    assert finals[0]["end_s"] <= 3.0
    assert received[-1]["type"] == "bye"
    assert rss < 200, f"peak RSS {rss:.0f} MiB: torch-free hosts stay far below torch's ~350 MiB"
    print(f"\nouvir-host on the fixture bundle: boot {boot_s:.2f} s, first partial {first_partial_s:.2f} s after "
          f"audio, peak RSS {rss:.0f} MiB")


def test_host_with_the_default_models_decoding_gives_what_transcribe_gives(torchless):
    """The default model's ONNX bundle with ``--decoding`` (beam search, n-gram, lexicon, numpy only): the
    host's Finals equal ``ouvir transcribe``'s with the default model (which uses that decoding.json too)."""
    sample = samples()[1]
    x, rate = sf.read(sample.path, dtype="int16")
    out = subprocess.run([sys.executable, "-m", "ouvir.engine.cli", "transcribe", str(sample.path), "--backend",
                          "onnx", "--precision", "fp32"], capture_output=True, text=True, check=True)
    proc = subprocess.Popen(
        [sys.executable, "-m", "ouvir.firmware_host.cli", str(root() / "onnx-fp32"), "--input", "stdin",
         "--max-lag-s", "30", "--jsonl", "--decoding", str(root() / "decoding.json")], cwd=REPO, env=torchless,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    host_out, err = proc.communicate(x.astype("<i2").tobytes(), timeout=120)
    assert proc.returncode == 0, err.decode()
    finals = [m["text"] for m in map(json.loads, host_out.decode().splitlines()) if m["type"] == "final"]
    assert rate == 16000 and finals == out.stdout.splitlines() and finals
