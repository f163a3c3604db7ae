"""Audio input: every path becomes 16 kHz mono float32 in [-1, 1] exactly once, at the edge.

Sources (files, raw PCM streams, arrays, microphones) share the ``AudioSource`` protocol and carry a
frozen ``Conversion`` saying what was done. Microphone backends are imported only when used.
"""

from .edge import MODEL_RATE, Conversion, EdgeConverter
from .files import FileSource
from .mic import InputDevice, MicSource, list_input_devices
from .pcm import FORMATS, PcmFormat, pcm_format
from .resample import StreamResampler
from .sources import ArraySource, AudioSource, RawSource

__all__ = [
    "FORMATS",
    "MODEL_RATE",
    "ArraySource",
    "AudioSource",
    "Conversion",
    "EdgeConverter",
    "FileSource",
    "InputDevice",
    "MicSource",
    "PcmFormat",
    "RawSource",
    "StreamResampler",
    "list_input_devices",
    "pcm_format",
]
