"""Streaming geometry of a cache-aware encoder: NeMo's ``encoder.streaming_cfg``, derived in this one place.

Worked example (hybrid FastConformer, dw_striding 8x, 10 ms feature hop, ``att_context_size=[70, 13]``):
the look-ahead is r = 13 encoder frames, so one chunk is r + 1 = 14 encoder frames = 14 * 80 ms = 1120 ms.
The subsampling turns ``1 + 8 * k`` feature columns into ``k + 1`` frames (causal, ``L -> L // 2 + 1``
three times), so the first step takes ``chunk_size[0] = 1 + 8 * 13 = 105`` new columns and later steps
``chunk_size[1] = 8 + 8 * 13 = 112``; shifts equal chunks (``cache_drop_size = 0``). Later steps prepend
the previous ``pre_encode_cache_size[1] = 8 + 1 = 9`` columns (121 columns in all, 16 frames after
subsampling) and drop the first ``drop_extra_pre_encoded = 1 + (9 - 1) // 8 = 2`` frames, leaving
``valid_out_len = 14``. The attention cache keeps ``last_channel_cache_size = 70`` frames (the left
context); the conv cache keeps ``conv_kernel_size - 1`` frames. Look-ahead = 13 * 80 ms = 1040 ms.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ouvir.models.config import EncoderConfig


@dataclass(frozen=True)
class StreamingGeometry:
    att_context_size: tuple[int, int]  # (left, right) encoder frames
    subsampling_factor: int
    window_stride: float  # feature hop in seconds (NeMo preprocessor.window_stride)
    chunk_size: tuple[int, int]  # new feature columns per step: (first step, later steps)
    shift_size: tuple[int, int]  # read-pointer advance per step, feature columns
    pre_encode_cache_size: tuple[int, int]  # past feature columns prepended: (first, later)
    drop_extra_pre_encoded: int  # frames dropped after subsampling on later steps (0 on step 0)
    valid_out_len: int  # encoder frames produced per full step
    last_channel_cache_size: int  # attention cache frames (C)
    cache_drop_size: int  # always 0 for chunked_limited attention
    conv_cache_size: int  # depthwise-conv cache frames (K - 1)

    @property
    def lookahead_frames(self) -> int:
        return self.att_context_size[1]

    @property
    def frame_ms(self) -> float:
        """Duration of one encoder frame."""
        return self.subsampling_factor * self.window_stride * 1000.0

    @property
    def lookahead_ms(self) -> float:
        return round(self.lookahead_frames * self.frame_ms, 6)

    @property
    def chunk_ms(self) -> float:
        """Audio consumed per later step (= the latency of one chunk, look-ahead included)."""
        return round(self.chunk_size[1] * self.window_stride * 1000.0, 6)

    def input_columns(self, step: int) -> int:
        """Feature columns of a full step's input: pre-encode cache + new columns."""
        i = 0 if step == 0 else 1
        return self.pre_encode_cache_size[i] + self.chunk_size[i]

    def drop_extra(self, step: int) -> int:
        """``drop_extra_pre_encoded`` to pass to step ``step`` (NeMo's default streaming mode)."""
        return 0 if step == 0 else self.drop_extra_pre_encoded

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(lookahead_ms=self.lookahead_ms, chunk_ms=self.chunk_ms)
        return d


def streaming_geometry(
    enc: EncoderConfig, context: tuple[int, int] | None = None, window_stride: float = 0.01
) -> StreamingGeometry:
    """NeMo's ``setup_streaming_params()`` for chunked_limited attention with causal conv subsampling."""
    left, right = context if context is not None else enc.default_context
    if left < 0 or right < 0 or left % (right + 1):
        raise ValueError(f"att_context_size={[left, right]} needs left, right >= 0 and left % (right + 1) == 0")
    f = enc.subsampling_factor
    sampling_frames = (1, f)  # ConvSubsampling.get_sampling_frames()
    pre_cache = (0, f + 1)  # ConvSubsampling.get_streaming_cache_size()
    chunk = (sampling_frames[0] + f * right, sampling_frames[1] + f * right)
    return StreamingGeometry(
        att_context_size=(left, right),
        subsampling_factor=f,
        window_stride=window_stride,
        chunk_size=chunk,
        shift_size=chunk,
        pre_encode_cache_size=pre_cache,
        drop_extra_pre_encoded=1 + (pre_cache[1] - 1) // f,
        valid_out_len=(chunk[1] - sampling_frames[1]) // f + 1,
        last_channel_cache_size=left,
        cache_drop_size=0,
        conv_cache_size=enc.conv_kernel_size - 1,
    )
