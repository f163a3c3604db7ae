"""The engine's exception types. Each names what failed and why, so a caller can print it as it is."""

from __future__ import annotations


class EngineError(Exception):
    """Base of every error the engine raises on purpose."""


class AudioInputError(EngineError):
    """Audio could not be taken in."""


class AudioFormatError(AudioInputError, ValueError):
    """A file or stream is unreadable, corrupt, truncated or in a format the engine does not take."""

    def __init__(self, source: str, problem: str) -> None:
        super().__init__(f"{source}: {problem}")
        self.source = source
        self.problem = problem


class NonFiniteAudioError(AudioInputError, ValueError):
    """Input samples contain NaN or Inf; they are never passed on."""

    def __init__(self, source: str, count: int, first_frame: int) -> None:
        super().__init__(
            f"{source}: {count} non-finite sample(s) (NaN/Inf), the first at frame {first_frame}"
        )
        self.source = source
        self.count = count
        self.first_frame = first_frame


class DeviceError(AudioInputError, OSError):
    """A capture device cannot be found or opened."""

    def __init__(self, device: str, reason: str) -> None:
        super().__init__(f"audio device {device}: {reason}")
        self.device = device
        self.reason = reason


class DeviceLostError(DeviceError):
    """A capture device vanished or its stream failed while recording."""
