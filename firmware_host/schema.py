"""The caption protocol of ``ouvir-host``, version 1: every JSON line on stdout (``--jsonl``) and every WebSocket
text frame is one JSON object with ``"v": 1`` and a ``"type"``. The full reference is ``firmware_host/README.md``
(section "Protocol"); this module is the one place that builds and checks the messages.

Host -> client (``OUTBOUND``): ``hello`` (once, on connect, followed by the latest ``health``), ``partial`` /
``final`` (captions), ``health`` and ``metrics`` (periodic, and ``health`` at once when it changes), ``error``,
``pong``, ``bye`` (before shutdown).
Broadcast messages carry ``seq``, one counter per host process, so a client can tell it missed some.

Client -> host (``INBOUND``), nothing else is accepted:
    {"v": 1, "type": "subscribe", "events": ["final", "health"]}   (choose broadcast types; default: all)
    {"v": 1, "type": "ping", "id": "abc"}                            (answered with pong, same id)
A request names no file, device or setting: the host's configuration comes only from its command line.

Clients of the audio server (``ouvir-host --input clients``) send their own audio (``AUDIO_INBOUND``): first
    {"v": 1, "type": "start", "format": "s16le", "rate": 48000, "channels": 1, "realtime": true}
then binary frames of interleaved little-endian PCM in that format, and at the end of their audio
    {"v": 1, "type": "end"}
(``subscribe`` and ``ping`` as above are accepted too).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from ouvir.engine.events import Final, Partial

VERSION = 1
BROADCAST = ("partial", "final", "health", "metrics")  # what subscribe may select
OUTBOUND = ("hello", *BROADCAST, "error", "pong", "bye")
INBOUND = ("subscribe", "ping")
AUDIO_INBOUND = ("start", "end", *INBOUND)  # what clients of the audio server may send (text frames)
AUDIO_FORMATS = ("s16le", "f32le")
AUDIO_RATES = (8000, 192000)  # the sample rates a start message may declare, inclusive
AUDIO_MAX_CHANNELS = 8
MAX_INBOUND_BYTES = 1024  # the WebSocket max_size for client frames
_PING_ID_CHARS = 64


class ProtocolError(ValueError):
    """A client frame outside the documented inbound set; ``code`` goes into the error reply."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Subscribe:
    events: frozenset[str]


@dataclass(frozen=True)
class Ping:
    id: str | int | None


@dataclass(frozen=True)
class Start:
    """The audio a client will send: PCM ``format`` at ``rate`` Hz with ``channels`` interleaved channels.
    ``realtime``: live audio (a microphone), subject to the overload policy; false: a recording sent as fast as
    the server takes it (back-pressure, nothing dropped)."""

    format: str
    rate: int
    channels: int = 1
    realtime: bool = True


@dataclass(frozen=True)
class End:
    """The client's audio has ended: the server decodes the rest, sends the last final, then ``bye``."""


def message(type_: str, **fields: Any) -> dict[str, Any]:
    """A v1 message of an OUTBOUND type; non-finite floats become null (JSON has no NaN)."""
    if type_ not in OUTBOUND:
        raise ValueError(f"unknown outbound message type {type_!r}")
    return {"v": VERSION, "type": type_, **{k: _finite(v) for k, v in fields.items()}}


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return value


def caption(event: Partial | Final, segment: int, offset_s: float) -> dict[str, Any]:
    """A partial/final message. ``segment`` is numbered per host run (an input restart opens a new engine
    stream whose segments count from 0 again); ``offset_s`` shifts the stream's times onto the host's
    audio timeline (seconds of audio heard since start, dropped audio and device gaps excluded)."""
    if isinstance(event, Final):
        return message("final", segment=segment, text=event.text, start_s=round(event.start_s + offset_s, 3),
                       end_s=round(event.end_s + offset_s, 3))
    return message("partial", segment=segment, text=event.text, start_s=round(event.start_s + offset_s, 3))


def encode(msg: dict[str, Any]) -> str:
    """One compact JSON line (no newline), UTF-8 safe, rejecting NaN."""
    return json.dumps(msg, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def error(code: str, text: str) -> dict[str, Any]:
    return message("error", code=code, message=text)


def parse_inbound(frame: str | bytes, accepts: tuple[str, ...] = INBOUND) -> Subscribe | Ping | Start | End:
    """Validate one client frame strictly: a small JSON object of an ``accepts`` type with exactly its keys."""
    if isinstance(frame, bytes):
        raise ProtocolError("binary_frame", "binary frames are not accepted; send JSON text")
    if len(frame.encode("utf-8")) > MAX_INBOUND_BYTES:
        raise ProtocolError("too_big", f"frames are limited to {MAX_INBOUND_BYTES} bytes")
    try:
        obj = json.loads(frame)
    except json.JSONDecodeError as e:
        raise ProtocolError("bad_json", f"not JSON ({e.msg})") from None
    if not isinstance(obj, dict):
        raise ProtocolError("bad_request", "a request is a JSON object")
    if obj.get("v") != VERSION:
        raise ProtocolError("bad_version", f"this host speaks protocol v{VERSION}; got v={obj.get('v')!r}")
    kind = obj.get("type")
    if kind not in accepts:
        raise ProtocolError("bad_request", f"unknown request type {kind!r}; accepted: {list(accepts)}")
    if kind == "start":
        return _start(obj)
    if kind == "end":
        _only_keys(obj, {"v", "type"})
        return End()
    if kind == "subscribe":
        _only_keys(obj, {"v", "type", "events"})
        events = obj.get("events")
        if not isinstance(events, list) or not events or not all(isinstance(e, str) for e in events):
            raise ProtocolError("bad_request", f"subscribe needs a non-empty list 'events' of {list(BROADCAST)}")
        unknown = sorted(set(events) - set(BROADCAST))
        if unknown:
            raise ProtocolError("bad_request", f"cannot subscribe to {unknown}; choose from {list(BROADCAST)}")
        return Subscribe(frozenset(events))
    _only_keys(obj, {"v", "type", "id"})  # ping
    ping_id = obj.get("id")
    valid = ping_id is None or (isinstance(ping_id, int) and not isinstance(ping_id, bool)) or (
        isinstance(ping_id, str) and len(ping_id) <= _PING_ID_CHARS)
    if not valid:
        raise ProtocolError("bad_request", f"ping 'id' is an integer or a string of <= {_PING_ID_CHARS} chars")
    return Ping(ping_id)


def _start(obj: dict[str, Any]) -> Start:
    _only_keys(obj, {"v", "type", "format", "rate", "channels", "realtime"})
    fmt, rate = obj.get("format"), obj.get("rate")
    channels, realtime = obj.get("channels", 1), obj.get("realtime", True)
    if fmt not in AUDIO_FORMATS:
        raise ProtocolError("bad_request", f"start 'format' is one of {list(AUDIO_FORMATS)}, got {fmt!r}")
    low, high = AUDIO_RATES
    if not (isinstance(rate, int) and not isinstance(rate, bool) and low <= rate <= high):
        raise ProtocolError("bad_request", f"start 'rate' is an integer from {low} to {high} Hz, got {rate!r}")
    if not (isinstance(channels, int) and not isinstance(channels, bool) and 1 <= channels <= AUDIO_MAX_CHANNELS):
        raise ProtocolError("bad_request", f"start 'channels' is an integer from 1 to {AUDIO_MAX_CHANNELS}")
    if not isinstance(realtime, bool):
        raise ProtocolError("bad_request", "start 'realtime' is true or false")
    return Start(fmt, rate, channels, realtime)


def _only_keys(obj: dict[str, Any], allowed: set[str]) -> None:
    extra = sorted(set(obj) - allowed)
    if extra:
        raise ProtocolError("bad_request", f"unexpected field(s) {extra} in {obj.get('type')!r}")
