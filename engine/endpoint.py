"""Endpointing: when does the open segment end? A frozen config and a pure function (sherpa-onnx rules).

"Silence" is what the decoder says it is: trailing encoder frames that emitted no token (CTC/RNNT blank),
not an energy threshold, so steady tones or noise without tokens count as silence and a continuous
utterance without token gaps is never split. A segment ends when any rule holds:

1. trailing silence >= ``silence_after_speech_s`` and the segment has emitted a token,
2. trailing silence >= ``silence_without_speech_s`` and it has not (this segment then closes empty:
   no Final, the next segment simply starts later),
3. segment length >= ``max_segment_s``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EndpointConfig:
    enabled: bool = True
    silence_after_speech_s: float = 1.2  # sherpa-onnx rule2 min_trailing_silence
    silence_without_speech_s: float = 2.4  # sherpa-onnx rule1 min_trailing_silence
    max_segment_s: float = 20.0  # sherpa-onnx rule3 min_utterance_length


@dataclass(frozen=True)
class SegmentProgress:
    """What the rules look at, in seconds of stream audio decoded in the open segment."""

    length_s: float  # decoded audio since the segment started
    trailing_silence_s: float  # decoded audio since the last emitted token (or since the segment start)
    has_speech: bool  # the segment has emitted at least one token


def is_endpoint(config: EndpointConfig, progress: SegmentProgress) -> bool:
    if not config.enabled:
        return False
    if progress.has_speech and progress.trailing_silence_s >= config.silence_after_speech_s:
        return True
    if not progress.has_speech and progress.trailing_silence_s >= config.silence_without_speech_s:
        return True
    return progress.length_s >= config.max_segment_s
