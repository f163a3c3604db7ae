"""The browser example (firmware_host/examples/mic.html) in headless Chromium: its fake microphone plays a shipped
sample (``--use-file-for-fake-audio-capture``), the page streams it to the audio server and shows the captions.
The page is read through the DevTools protocol. Skipped where Chromium is not installed (``make`` installs it)."""

from __future__ import annotations

import functools
import http.server
import json
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from websockets.sync.client import connect

from ouvir.engine.default_model import default_model, samples
from ouvir.engine.recognizer import Recognizer
from ouvir.firmware_host import schema
from ouvir.firmware_host.access import ServerConfig
from ouvir.firmware_host.audio_server import AudioServer
from tests.conftest import REPO

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")


@pytest.fixture
def page_server():
    """firmware_host/examples over http on loopback: (origin, thread)."""
    handler = functools.partial(_QuietHandler, directory=str(REPO / "firmware_host/examples"))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def _devtools(profile: Path, timeout: float = 30) -> int:
    port_file = profile / "DevToolsActivePort"
    deadline = time.monotonic() + timeout
    while not port_file.exists() or not port_file.read_text().strip():
        assert time.monotonic() < deadline, "chromium did not open its DevTools port"
        time.sleep(0.1)
    return int(port_file.read_text().split()[0])


def _evaluate(port: int, expression: str):
    targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5))
    page = next(t for t in targets if t["type"] == "page")
    with connect(page["webSocketDebuggerUrl"], max_size=2**24) as cdp:
        cdp.send(json.dumps({"id": 1, "method": "Runtime.evaluate",
                             "params": {"expression": expression, "returnByValue": True}}))
        while (reply := json.loads(cdp.recv(timeout=10))).get("id") != 1:
            pass
    return reply["result"]["result"].get("value")


def test_the_page_captions_its_microphone(serve, page_server, tmp_path):
    model, backend = default_model("onnx", "fp32")
    sample = samples()[0]
    audio, rate = sf.read(sample.path, dtype="float32")
    wav = tmp_path / "mic.wav"  # the sample, then 2 s of silence: an endpoint ends each pass of the loop
    sf.write(wav, np.concatenate([audio, np.zeros(2 * rate, np.float32)]), rate, subtype="PCM_16")
    hello = schema.message("hello", server="ouvir-host", protocol=schema.VERSION)
    server, url = serve(AudioServer(ServerConfig(host="127.0.0.1", port=0, origins=(page_server,)), hello,
                                    Recognizer.open(model, backend)))
    profile = tmp_path / "profile"
    browser = subprocess.Popen(
        [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", f"--user-data-dir={profile}",
         "--remote-debugging-port=0", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
         f"--use-file-for-fake-audio-capture={wav}", "--autoplay-policy=no-user-gesture-required",
         f"{page_server}/mic.html?server={url}&autostart=1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port = _devtools(profile)
        finals: list[str] = []
        deadline = time.monotonic() + 40
        while not finals and time.monotonic() < deadline:
            time.sleep(0.5)
            finals = _evaluate(port, "[...document.querySelectorAll('#captions .final')].map(p => p.textContent)")
        page_status = _evaluate(port, "document.getElementById('status').textContent")
    finally:
        browser.terminate()
        browser.wait(timeout=10)
    assert finals, f"no caption on the page; its status: {page_status!r}"
    # Chromium resamples the file to its audio rate (44.1 kHz here) and the server back to 16 kHz: the text may
    # differ a little from transcribe's of the same file (it was equal when written: "a bad is delicate skin").
    expected = _transcribe(wav).split()
    assert len(set(finals[0].split()) & set(expected)) >= len(expected) / 2, (finals, expected)
    assert page_status.startswith("ok: client 127.0.0.1:") and "f32, 1 ch" in page_status, page_status
    assert server.stats.accepted == 1 and server.stats.rejected_protocol == 0


def _transcribe(wav: Path) -> str:
    out = subprocess.run([sys.executable, "-m", "ouvir.engine.cli", "transcribe", str(wav), "--backend", "onnx",
                          "--precision", "fp32", "--beam", "0"], capture_output=True, text=True, check=True)
    return " ".join(out.stdout.split())
