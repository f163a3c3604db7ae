"""A scripted Backend for engine tests: encoder frames carry their global index, the heads emit a script.

``script`` maps a global encoder frame to the tokens emitted there (RNNT: all of them, in order; CTC: the
first, one token per frame). Stateless like a real backend: the frame counter travels in the encoder
state (``cache_last_channel_len``) and the token counter in the predictor state (``h``). ``on_encode``
runs on every encoder step (tests use it to advance a fake clock).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ouvir.engine.backends.base import ChunkGeometry, EncoderState, ModelInfo, PredictorState
from ouvir.engine.features_config import FeatureConfig

VOCABULARY = ("<unk>", "▁he", "llo", "▁wor", "ld", "▁a", "▁b")
GEOMETRY_160MS = ChunkGeometry((9, 16), (9, 16), (0, 9), 2, (1, 8), 8, (70, 1))  # like [70, 1]: 80 ms look-ahead


def subsampled(columns: int, factor: int) -> int:
    """Causal conv subsampling: L -> L // 2 + 1 per stride-2 stage."""
    for _ in range(factor.bit_length() - 1):
        columns = columns // 2 + 1
    return columns


class ScriptedBackend:
    name = "scripted"
    precision = "fp32"
    batched_joint = False  # joint() reads row 0 only
    batch_exact = False  # one stream

    def __init__(
        self,
        script: dict[int, list[int]],
        geometry: ChunkGeometry = GEOMETRY_160MS,
        on_encode: Callable[[], None] | None = None,
    ) -> None:
        self.script = script
        self.order = [(f, t) for f in sorted(script) for t in script[f]]  # RNNT emission order
        self.on_encode = on_encode
        self.info = ModelInfo(FeatureConfig(), VOCABULARY, geometry, ("rnnt", "ctc"), max_symbols=4)
        self.blank = len(VOCABULARY)
        self.calls = 0

    def initial_state(self, batch: int = 1) -> EncoderState:
        return EncoderState(np.zeros((1, batch, 1, 1), np.float32), np.zeros((1, batch, 1, 1), np.float32),
                            np.zeros(batch, np.int64))

    def encode(self, chunk, chunk_len, state, first):
        self.calls += 1
        if self.on_encode is not None:
            self.on_encode()
        g = self.info.geometry
        n = subsampled(int(chunk_len[0]), g.subsampling_factor) - (0 if first else g.drop_extra_pre_encoded)
        start = int(state.cache_last_channel_len[0])
        encoded = np.arange(start, start + n, dtype=np.float32)[None, :, None]  # (1, T, 1): global frame index
        nxt = EncoderState(state.cache_last_channel, state.cache_last_time, state.cache_last_channel_len + n)
        return encoded, np.array([n], np.int64), nxt

    def ctc_log_probs(self, encoded):
        frames = encoded[0, :, 0].astype(int)  # (T,)
        best = [self.script.get(int(f), [self.blank])[0] for f in frames]
        return np.log(np.eye(self.blank + 1, dtype=np.float32)[best] * 0.9 + 0.1 / (self.blank + 1))[None]

    def initial_predictor_state(self, batch: int = 1) -> PredictorState:
        return PredictorState(np.full((1, batch, 1), -1.0, np.float32), np.zeros((1, batch, 1), np.float32))

    def predict(self, token, state):
        h = state.h + 1  # tokens fed (<SOS> brings it to 0)
        return h[0].copy(), PredictorState(h, state.c)  # prediction (B, 1) = tokens emitted so far

    def joint(self, encoded_frame, prediction):
        frame, emitted = int(encoded_frame[0, 0]), int(prediction[0, 0])
        logits = np.zeros((1, self.blank + 1), np.float32)
        nxt = self.order[emitted] if emitted < len(self.order) else None
        logits[0, nxt[1] if nxt is not None and nxt[0] == frame else self.blank] = 1.0
        return logits
