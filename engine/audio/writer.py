"""``--save-audio``: a WAV of exactly the 16 kHz mono float32 blocks handed to the recognizer."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .edge import MODEL_RATE


@contextmanager
def audio_writer(path: Path | None) -> Iterator[Callable[[np.ndarray], None] | None]:
    """Yields ``write(block)`` for a float WAV at ``path`` (None: yields None, writes nothing).

    Give it to ``RealtimeLoop(on_capture=...)``: it then sees every captured block, before any overload
    dropping. Float samples keep the values bit-exact, so ``ouvir transcribe`` of the file repeats the decode.
    """
    if path is None:
        yield None
        return
    import soundfile as sf  # audio extra

    with sf.SoundFile(str(path), "w", samplerate=MODEL_RATE, channels=1, subtype="FLOAT") as f:
        yield f.write
