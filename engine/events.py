"""Typed, frozen events produced by decoding and by the real-time loop.

A segment is one utterance between endpoints. While it is open, ``Partial`` events carry its current text
(it may still change); ``Final`` closes it for good (its text never changes) and the next segment gets the
next number. ``Lag`` and ``Overload`` come from the real-time loop (engine/loop.py). Times are seconds of
stream audio (the audio the recognizer was given), from the start of the stream.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TokenTime:
    """One emitted token: vocabulary id, its piece, and the encoder frame (and its start time) it came from."""

    id: int
    piece: str
    frame: int  # global encoder-frame index in the stream
    start_s: float  # frame * frame duration


@dataclass(frozen=True)
class Partial:
    text: str  # the open segment's text so far; may still change
    segment: int
    start_s: float


@dataclass(frozen=True)
class Final:
    text: str  # never changes
    segment: int
    start_s: float
    end_s: float
    tokens: tuple[TokenTime, ...]


@dataclass(frozen=True)
class Lag:
    """Audio captured vs audio decoded, measured by the real-time loop."""

    captured_s: float  # audio delivered by the source so far (dropped audio included)
    decoded_s: float  # audio the recognizer has consumed and decoded, plus audio dropped by the policy
    lag_s: float  # captured_s - decoded_s: audio waiting in the queue or being decoded


@dataclass(frozen=True)
class Overload:
    """The loop fell behind by more than its bound and dropped the oldest queued audio."""

    dropped_s: float  # audio dropped since the previous Overload event
    dropped_total_s: float
    lag_s: float  # lag after dropping
    stream_s: float  # stream time at which the gap sits (the audio before and after it are spliced)


Event = Partial | Final | Lag | Overload


def event_to_dict(event: Event) -> dict[str, Any]:
    """JSON-ready dict with a ``type`` field (``partial``, ``final``, ``lag``, ``overload``)."""
    return {"type": type(event).__name__.lower(), **dataclasses.asdict(event)}
