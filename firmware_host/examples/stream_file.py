"""Stream a WAV file to an ouvir-host audio server (``--input clients``) and print its captions: finals as lines,
the open segment's partial rewritten in place on a terminal.

    python stream_file.py talk.wav                                  # ws://127.0.0.1:8765/, as fast as it decodes
    python stream_file.py talk.wav --realtime                       # paced like a microphone
    python stream_file.py talk.wav --url ws://box:8765/ --token "$OUVIR_HOST_TOKEN"

Needs only the ``websockets`` package; reads 16-bit PCM WAV files (any rate, any channels: the server converts).
Exit code 0 after the server's last final, 1 if it refused or dropped the connection.
"""

from __future__ import annotations

import argparse
import array
import json
import os
import sys
import threading
import time
import wave
from collections.abc import Callable

from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect


class ServerError(Exception):
    """The server sent an error, or closed the connection before the end of the captions."""


def stream(url: str, path: str, token: str | None = None, realtime: bool = False, frame_ms: int = 100,
           fmt: str = "s16le", on_message: Callable[[dict], None] | None = None) -> list[str]:
    """Send the file, return the texts of its finals. Raises ServerError if the server sent an error or closed
    the connection before its ``bye``, InvalidStatus if it refused the handshake."""
    with wave.open(path, "rb") as wav:
        if wav.getsampwidth() != 2:
            raise ValueError(f"{path}: {8 * wav.getsampwidth()}-bit samples; this example sends 16-bit PCM")
        rate, channels = wav.getframerate(), wav.getnchannels()
        pcm = wav.readframes(wav.getnframes())
    if fmt == "f32le":  # the same samples as float32 in [-1, 1) (what a browser's Web Audio gives)
        pcm = array.array("f", (v / 32768 for v in array.array("h", pcm))).tobytes()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    step = rate * frame_ms // 1000 * (4 if fmt == "f32le" else 2) * channels  # bytes per frame
    finals: list[str] = []
    with connect(url, additional_headers=headers, max_size=2**20) as ws:
        ws.send(json.dumps({"v": 1, "type": "start", "format": fmt, "rate": rate, "channels": channels,
                            "realtime": realtime}))
        sender = threading.Thread(target=_send, args=(ws, pcm, step, frame_ms / 1000 if realtime else 0.0))
        sender.start()
        try:
            for frame in ws:
                msg = json.loads(frame)
                if on_message is not None:
                    on_message(msg)
                if msg["type"] == "final":
                    finals.append(msg["text"])
                elif msg["type"] == "bye":
                    return finals
                elif msg["type"] == "error":
                    raise ServerError(f"{msg['code']}: {msg['message']}")
        except ConnectionClosed as e:
            raise ServerError(f"connection closed: {e}") from None
        finally:
            sender.join()
    raise ServerError("the server closed the connection before the end of the captions")


def _send(ws, pcm: bytes, step: int, pace_s: float) -> None:
    t0 = time.monotonic()
    try:
        for i, at in enumerate(range(0, len(pcm), step)):
            if pace_s:
                time.sleep(max(0.0, t0 + i * pace_s - time.monotonic()))
            ws.send(pcm[at: at + step])
        ws.send(json.dumps({"v": 1, "type": "end"}))
    except ConnectionClosed:  # the server closed the connection: the reader reports why
        pass


def show(msg: dict) -> None:
    tty = sys.stdout.isatty()
    if msg["type"] == "partial" and tty:
        sys.stdout.write(f"\r\x1b[K{msg['text']}")
    elif msg["type"] == "final":
        sys.stdout.write(("\r\x1b[K" if tty else "") + msg["text"] + "\n")
    elif msg["type"] == "health" and msg["status"] != "ok":
        print(f"# {msg['status']}: {msg['overload']}", file=sys.stderr)
    sys.stdout.flush()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("wav")
    p.add_argument("--url", default="ws://127.0.0.1:8765/")
    p.add_argument("--token", default=os.environ.get("OUVIR_HOST_TOKEN"))
    p.add_argument("--realtime", action="store_true", help="send at real-time pace (live audio)")
    p.add_argument("--format", choices=("s16le", "f32le"), default="s16le", help="the PCM format to send")
    args = p.parse_args()
    try:
        stream(args.url, args.wav, args.token, args.realtime, fmt=args.format, on_message=show)
    except InvalidStatus as e:
        print(f"refused: HTTP {e.response.status_code} {e.response.body.decode(errors='replace').strip()}",
              file=sys.stderr)
        return 1
    except (OSError, ServerError) as e:
        print(f"failed: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
