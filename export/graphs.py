"""Which graphs a bundle holds, with example inputs and tensor names, and how each is traced.

Per look-ahead (attention context) two encoder graphs reproduce NeMo's default streaming mode:
``encoder_first`` (step 0: ``chunk_size[0]`` columns, nothing dropped) and ``encoder_next`` (later steps:
``pre_encode_cache_size[1] + chunk_size[1]`` columns, ``drop_extra_pre_encoded`` frames dropped; this is
also NeMo's / sherpa-onnx's exported encoder). The time axis is fixed: a last, shorter chunk is zero-padded
to the graph's width with ``length`` = its real width (the step masks padded columns, so the valid output
frames are unchanged; the caches it returns have moved past the padding, which is harmless because the
stream ends there). Heads are shared by all look-aheads: ``ctc_head``, ``decoder`` and ``joiner``.

Tracing folds every constant of the fixed chunk (the relative-position table slice and its ``linear_pos``
projection, the chunked attention masks) into precomputed tensors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from executorch.exir.passes.constant_prop_pass import constant_prop_pass
from torch.export import Dim, ExportedProgram

from ouvir.export.wrappers import EncoderStep, RNNTDecoderStep, RNNTJoiner, encoder_io_names
from ouvir.models.asr import ASRModel
from ouvir.models.geometry import StreamingGeometry, streaming_geometry
from ouvir.models.state import state_spec

EXAMPLE_BATCH = 2  # >= 2, or torch.export specialises a dynamic batch to 1
MAX_BATCH = 256


def lookahead_name(context: tuple[int, int]) -> str:
    return f"{context[0]}_{context[1]}"


@dataclass(frozen=True, eq=False)
class GraphSpec:
    name: str  # unique in the bundle: "encoder_first.70_13", "encoder_next.70_13", "ctc_head", ...
    role: str  # "encoder_first" | "encoder_next" | "ctc" | "rnnt_decoder" | "rnnt_joint"
    module: torch.nn.Module
    example: tuple[torch.Tensor, ...]  # batch EXAMPLE_BATCH
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    batch_axes: tuple[int, ...]  # batch axis of each input
    lookahead: str | None = None
    info: dict[str, Any] = field(default_factory=dict)  # written to the manifest
    fixed_batch: int = 1  # batch of the fixed-shape (ExecuTorch) graph

    def example_batch(self, batch: int) -> tuple[torch.Tensor, ...]:
        return tuple(x.narrow(axis, 0, batch) for x, axis in zip(self.example, self.batch_axes, strict=True))

    @property
    def fixed_example(self) -> tuple[torch.Tensor, ...]:
        """The example at the fixed-shape (ExecuTorch) graph's batch."""
        return self.example_batch(self.fixed_batch)


def encoder_spec(model: ASRModel, geo: StreamingGeometry, first: bool) -> GraphSpec:
    ctx = geo.att_context_size
    step = 0 if first else 1
    columns, drop = geo.input_columns(step), geo.drop_extra(step)
    spec = state_spec(model.config.encoder, ctx)
    b = EXAMPLE_BATCH
    state = spec.initial(b)
    example = (
        torch.randn(b, model.config.encoder.feat_in, columns),  # (B, F, T)
        torch.full((b,), columns, dtype=torch.int64),  # (B,)
        state.cache_last_channel.transpose(0, 1).contiguous(),  # (B, L, C, D)
        state.cache_last_time.transpose(0, 1).contiguous(),  # (B, L, D, K-1)
        state.cache_last_channel_len,  # (B,)
    )
    inputs, outputs = encoder_io_names(model.encoder, ctx)
    role = "encoder_first" if first else "encoder_next"
    name = lookahead_name(ctx)
    return GraphSpec(
        name=f"{role}.{name}", role=role, module=EncoderStep(model.encoder, ctx, drop), example=example,
        inputs=inputs, outputs=outputs, batch_axes=(0,) * 5, lookahead=name,
        info={"att_context_size": list(ctx), "chunk_frames": columns, "drop_extra_pre_encoded": drop,
              "out_frames": geo.valid_out_len, "cache_layout": "batch_first"},
    )


def head_specs(model: ASRModel, max_frames: int) -> list[GraphSpec]:
    """``max_frames``: the most encoder frames one step yields (the CTC head's time axis where it is fixed)."""
    cfg, b = model.config, EXAMPLE_BATCH
    frames = max(max_frames, 2)  # a dynamic axis needs an example >= 2
    specs = []
    if model.ctc is not None:
        specs.append(GraphSpec(
            name="ctc_head", role="ctc", module=model.ctc,
            example=(torch.randn(b, cfg.encoder.d_model, frames),), inputs=("encoded",), outputs=("logprobs",),
            batch_axes=(0,), info={"frames": frames},
        ))
    if model.predictor is not None:
        r = cfg.rnnt
        blank = torch.full((b, 1), r.vocab_size, dtype=torch.int32)  # (B, 1)
        zeros = torch.zeros(r.pred_rnn_layers, b, r.pred_hidden)  # (P, B, H)
        specs.append(GraphSpec(
            name="decoder", role="rnnt_decoder", module=RNNTDecoderStep(model.predictor),
            example=(blank, torch.ones(b, dtype=torch.int32), zeros, zeros.clone()),
            inputs=("targets", "target_length", "input_states_1", "input_states_2"),
            outputs=("outputs", "prednet_lengths", "output_states_1", "output_states_2"),
            batch_axes=(0, 0, 1, 1),
        ))
        rows = max(b, frames)
        specs.append(GraphSpec(  # fixed shape: one row per frame of a step, the greedy decoder scores them at once
            name="joiner", role="rnnt_joint", module=RNNTJoiner(model.joint),
            example=(torch.randn(rows, cfg.encoder.d_model, 1), torch.randn(rows, r.pred_hidden, 1)),
            inputs=("encoder_outputs", "decoder_outputs"), outputs=("outputs",), batch_axes=(0, 0),
            fixed_batch=frames,
        ))
    return specs


def graph_specs(model: ASRModel, contexts: list[tuple[int, int]]) -> list[GraphSpec]:
    window_stride = model.config.features.window_stride
    geos = [streaming_geometry(model.config.encoder, ctx, window_stride) for ctx in contexts]
    specs = [encoder_spec(model, geo, first) for geo in geos for first in (True, False)]
    return specs + head_specs(model, max(geo.valid_out_len for geo in geos))


def trace(spec: GraphSpec, dynamic_batch: bool) -> ExportedProgram:
    """``torch.export`` the spec and fold its constants. ``dynamic_batch`` (ONNX): any batch, and any number
    of frames for the CTC head; otherwise (ExecuTorch) every shape is fixed, batch ``fixed_batch``."""
    if dynamic_batch:
        batch = Dim("batch", min=1, max=MAX_BATCH)
        dims = tuple({axis: batch} for axis in spec.batch_axes)
        if spec.role == "ctc":  # encoded (B, D, T'): any number of frames
            dims = ({0: batch, 2: Dim("frames", min=1, max=4096)},)
        ep = torch.export.export(spec.module, spec.example, dynamic_shapes=dims)
    else:
        ep = torch.export.export(spec.module, spec.fixed_example)
    return constant_prop_pass(ep)
