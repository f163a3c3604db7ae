"""NeMo's chunk schedule over a feature buffer (``CacheAwareStreamingAudioBuffer``, spec §8.2) and a
driver that runs an encoder's explicit-state ``step`` over it.

Two modes: the default one (the infer script's; equal to offline) and ``pad_and_drop`` (the mode NeMo's
ONNX export assumes: every step, the first included, has the full pre-encode cache and drops frames).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

import torch

from ouvir.models.geometry import StreamingGeometry
from ouvir.models.state import EncoderState


@dataclass(frozen=True)
class Chunk:
    start: int  # first new feature column (the buffer read pointer)
    stop: int  # end of the new columns (exclusive)
    zeros: int  # zero columns prepended (pre-encode cache not available yet)
    cache: int  # past buffer columns prepended after the zeros
    drop_extra: int  # encoder frames dropped after subsampling
    shift: int  # read-pointer advance after this step

    @property
    def width(self) -> int:
        return self.zeros + self.cache + self.stop - self.start


def chunk_schedule(geo: StreamingGeometry, columns: int, pad_and_drop: bool = False) -> list[Chunk]:
    """The steps NeMo takes over a buffer of ``columns`` feature columns.

    Step 0 takes ``chunk_size[0]`` columns with ``pre_encode_cache_size[0]`` zero columns (both the
    "later" sizes in pad_and_drop mode); step s >= 1 prepends the previous ``pre_encode_cache_size[1]``
    buffer columns, left-padded with zeros near the start. Iteration stops when fewer new columns remain
    than the subsampling needs for one frame (NeMo ``get_sampling_frames()``: 1 on step 0, then the factor).
    """
    out: list[Chunk] = []
    idx = 0
    while idx < columns:
        first = idx == 0
        i = 0 if first and not pad_and_drop else 1
        new = min(geo.chunk_size[i], columns - idx)
        if new < (1 if first else geo.subsampling_factor):
            break
        past = 0 if first else min(geo.pre_encode_cache_size[i], idx)
        drop = 0 if first and not pad_and_drop else geo.drop_extra_pre_encoded
        out.append(Chunk(idx, idx + new, geo.pre_encode_cache_size[i] - past, past, drop, geo.shift_size[i]))
        idx += geo.shift_size[i]
    return out


class StepOutput(NamedTuple):
    chunk: Chunk
    features: torch.Tensor  # (B, F, n) the columns fed
    features_len: torch.Tensor  # (B,) NeMo processed_signal_length
    state_in: EncoderState
    encoded: torch.Tensor  # (B, D, t)
    encoded_len: torch.Tensor  # (B,)
    state_out: EncoderState


def stream_encoder(
    encoder: torch.nn.Module,
    features: torch.Tensor,
    lengths: torch.Tensor,
    geo: StreamingGeometry,
    state: EncoderState,
    pad_and_drop: bool = False,
) -> Iterator[StepOutput]:
    """Run ``encoder.step`` over features (B, F, T) (lengths (B,) valid columns) chunk by chunk."""
    for ch in chunk_schedule(geo, features.shape[-1], pad_and_drop):
        zeros = features.new_zeros(features.shape[0], features.shape[1], ch.zeros)  # (B, F, z)
        x = torch.cat([zeros, features[:, :, ch.start - ch.cache : ch.stop]], dim=-1)  # (B, F, n)
        x_len = (lengths - ch.start + ch.zeros + ch.cache).clamp(0, ch.width)  # (B,)
        encoded, encoded_len, nxt = encoder.step(x, x_len, state, context=geo.att_context_size,
                                                 drop_extra=ch.drop_extra)
        yield StepOutput(ch, x, x_len, state, encoded, encoded_len, nxt)
        state = nxt
