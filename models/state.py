"""Encoder streaming state: one layout (NeMo's PyTorch layer-first one) and one spec that describes it.

``state_spec`` is the single source of the state's names, shapes, dtypes and initial values: the encoder
step, the exporters (input names / ``*_next`` output names as in NeMo's ONNX export) and the bundle
manifest all read it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import torch

from ouvir.models.config import EncoderConfig
from ouvir.models.geometry import streaming_geometry


class EncoderState(NamedTuple):
    cache_last_channel: torch.Tensor  # (L, B, C, D) float: normalised attention inputs, right-aligned
    cache_last_time: torch.Tensor  # (L, B, D, K-1) float: GLU outputs feeding the causal depthwise conv
    cache_last_channel_len: torch.Tensor  # (B,) int64: valid trailing slots of cache_last_channel


@dataclass(frozen=True)
class TensorSpec:
    name: str  # exported input name (NeMo ONNX)
    next_name: str  # exported output name (NeMo ONNX)
    shape: tuple[int | str, ...]  # layer-first; "B" is the batch
    dtype: str  # torch dtype name

    def sized(self, batch: int) -> tuple[int, ...]:
        return tuple(batch if d == "B" else int(d) for d in self.shape)

    def batch_first(self) -> tuple[int | str, ...]:
        """The ONNX/sherpa-onnx layout: batch and layer axes swapped (no-op for 1-D tensors)."""
        return self.shape if len(self.shape) == 1 else (self.shape[1], self.shape[0], *self.shape[2:])


@dataclass(frozen=True)
class StateSpec:
    tensors: tuple[TensorSpec, TensorSpec, TensorSpec]  # in EncoderState field order

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tensors)

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(t.next_name for t in self.tensors)

    def initial(self, batch: int = 1, device: torch.device | str | None = None,
                dtype: torch.dtype = torch.float32) -> EncoderState:
        """All-zero caches, ``cache_last_channel_len = 0`` (NeMo ``get_initial_cache_state``)."""
        return EncoderState(*(
            torch.zeros(t.sized(batch), device=device, dtype=dtype if t.dtype == "float32" else torch.int64)
            for t in self.tensors
        ))

    def to_dict(self) -> dict[str, Any]:
        return {
            "layout": "layer_first",
            "tensors": [
                {"name": t.name, "next_name": t.next_name, "shape": list(t.shape),
                 "batch_first_shape": list(t.batch_first()), "dtype": t.dtype}
                for t in self.tensors
            ],
        }


def state_spec(enc: EncoderConfig, context: tuple[int, int] | None = None) -> StateSpec:
    geo = streaming_geometry(enc, context)
    n, d = enc.n_layers, enc.d_model
    return StateSpec(tensors=(
        TensorSpec("cache_last_channel", "cache_last_channel_next", (n, "B", geo.last_channel_cache_size, d),
                   "float32"),
        TensorSpec("cache_last_time", "cache_last_time_next", (n, "B", d, geo.conv_cache_size), "float32"),
        TensorSpec("cache_last_channel_len", "cache_last_channel_next_len", ("B",), "int64"),
    ))
