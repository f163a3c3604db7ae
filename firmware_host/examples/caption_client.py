"""Print live captions from an ouvir-host: partials rewrite the current line, finals stay.

    python caption_client.py                              # ws://127.0.0.1:8765/
    python caption_client.py ws://pi.local:8765/ --token "$OUVIR_HOST_TOKEN" --health

Needs only the ``websockets`` package. It reconnects (1 s, 2 s, ... up to 30 s) when the host goes away.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.sync.client import connect


def show(msg: dict, health: bool) -> None:
    kind = msg.get("type")
    if kind == "partial":
        sys.stdout.write(f"\r\x1b[K  {msg['text']}")
    elif kind == "final":
        sys.stdout.write(f"\r\x1b[K[{msg['start_s']:7.2f}-{msg['end_s']:7.2f}] {msg['text']}\n")
    elif kind == "health" and health:
        sys.stdout.write(f"\r\x1b[K# health {msg['status']}: input {msg['input']['state']}\n")
    elif kind == "metrics" and health:
        sys.stdout.write(f"\r\x1b[K# lag {msg['lag_s']} s, rtf {msg['rtf']}, dropped {msg['dropped_audio_s']} s\n")
    elif kind == "error":
        sys.stdout.write(f"\r\x1b[K# host error {msg['code']}: {msg['message']}\n")
    elif kind == "hello":
        sys.stdout.write(f"# connected: {msg.get('bundle', {})}\n")
    sys.stdout.flush()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("url", nargs="?", default="ws://127.0.0.1:8765/")
    p.add_argument("--token", default=os.environ.get("OUVIR_HOST_TOKEN"), help="for a host bound beyond loopback")
    p.add_argument("--health", action="store_true", help="also print health and metrics")
    args = p.parse_args()
    try:
        return follow(args.url, args.token, args.health)
    except KeyboardInterrupt:
        return 0


def follow(url: str, token: str | None, health: bool) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    events = ["partial", "final", *(["health", "metrics"] if health else [])]
    delay = 1.0
    while True:
        try:
            with connect(url, additional_headers=headers) as ws:
                ws.send(json.dumps({"v": 1, "type": "subscribe", "events": events}))
                delay = 1.0
                for frame in ws:
                    show(json.loads(frame), health)
        except InvalidStatus as e:
            if e.response.status_code in (401, 403, 404):  # retrying will not help
                print(f"refused: HTTP {e.response.status_code} {e.response.body.decode(errors='replace').strip()}",
                      file=sys.stderr)
                return 1
            print(f"# refused (HTTP {e.response.status_code}); retrying in {delay:g} s", file=sys.stderr)
        except (OSError, ConnectionClosed, InvalidHandshake) as e:
            print(f"\n# disconnected ({e}); retrying in {delay:g} s", file=sys.stderr)
        time.sleep(delay)
        delay = min(30.0, delay * 2)


if __name__ == "__main__":
    sys.exit(main())
