"""Cache-aware (Fast)Conformer encoder (NeMo ``ConformerEncoder``, rel_pos, chunked_limited, causal convs).

Submodule and parameter names are NeMo's state-dict keys without the ``encoder.`` prefix
(``pre_encode.conv.0.weight``, ``layers.0.self_attn.pos_bias_u``, ...), so a NeMo checkpoint loads by
name. ``forward`` is the offline pass (whole utterances, padded batches); ``step`` is NeMo's
``cache_aware_stream_step`` in its default streaming mode with an explicit ``EncoderState``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ouvir.models.attention import RelPositionalEncoding, attention_masks
from ouvir.models.block import ConformerLayer
from ouvir.models.config import EncoderConfig
from ouvir.models.geometry import StreamingGeometry, streaming_geometry
from ouvir.models.state import EncoderState, StateSpec, state_spec
from ouvir.models.subsampling import ConvSubsampling


class ConformerEncoder(nn.Module):
    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.cfg = cfg
        self.pre_encode = ConvSubsampling(cfg.subsampling, cfg.subsampling_factor, cfg.feat_in, cfg.d_model,
                                          cfg.conv_channels)
        self.pos_enc = RelPositionalEncoding(cfg.d_model, cfg.pos_emb_max_len,
                                             math.sqrt(cfg.d_model) if cfg.xscaling else None,
                                             cfg.dropout_pre_encoder, cfg.dropout_emb)
        # untie_biases=False: one (u, v) pair shared by every layer; like NeMo it is registered only under
        # each layer's self_attn, so the state dict has layers.N.self_attn.pos_bias_u/v for every N.
        u, v = (None, None) if cfg.untie_biases else (
            nn.Parameter(torch.zeros(cfg.n_heads, cfg.d_head)), nn.Parameter(torch.zeros(cfg.n_heads, cfg.d_head)))
        self.layers = nn.ModuleList(ConformerLayer(cfg, u, v) for _ in range(cfg.n_layers))

    def geometry(self, context: tuple[int, int] | None = None, window_stride: float = 0.01) -> StreamingGeometry:
        return streaming_geometry(self.cfg, context, window_stride)

    def state_spec(self, context: tuple[int, int] | None = None) -> StateSpec:
        return state_spec(self.cfg, context)

    def _context(self, context: tuple[int, int] | None) -> tuple[int, int]:
        left, right = context if context is not None else self.cfg.default_context
        if left < 0 or right < 0 or left % (right + 1):
            raise ValueError(f"att_context_size={[left, right]} needs left, right >= 0 and left % (right + 1) == 0")
        return int(left), int(right)

    def forward(self, features: torch.Tensor, lengths: torch.Tensor,
                context: tuple[int, int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Offline pass. ``features`` (B, F, T) log-mel, ``lengths`` (B,) valid columns.

        ``context`` is an ``att_context_size`` (default: the config's first). Returns encoded (B, D, T')
        and its lengths (B,) int64; frames at or beyond a length are padding."""
        ctx = self._context(context)
        x, lengths = self.pre_encode(features.transpose(1, 2), lengths)  # (B, T', D)
        x, pos_emb = self.pos_enc(x)
        valid = torch.arange(x.size(1), device=x.device)[None, :] < lengths[:, None]  # (B, T')
        att_mask, pad_mask = attention_masks(valid, ctx, x.size(1))
        for layer in self.layers:
            x, _, _ = layer(x, pos_emb, att_mask, pad_mask)
        return x.transpose(1, 2), lengths  # (B, D, T')

    def step(
        self,
        chunk: torch.Tensor,
        chunk_len: torch.Tensor,
        state: EncoderState,
        context: tuple[int, int] | None = None,
        drop_extra: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, EncoderState]:
        """One streaming step (NeMo ``cache_aware_stream_step``, default mode).

        ``chunk`` (B, F, T) = pre-encode cache columns + new columns (see ``StreamingGeometry``),
        ``chunk_len`` (B,) valid columns, ``state`` from ``state_spec(...).initial`` or the previous step,
        ``drop_extra`` frames removed after subsampling: 0 on the first step, default
        ``drop_extra_pre_encoded`` (2) afterwards. Returns encoded (B, D, T'), encoded_len (B,) int64 and
        the next state. All outputs are kept (for chunked_limited attention a step of at most
        ``chunk_size`` new columns never yields more than ``valid_out_len`` frames, so NeMo's trim is moot).
        """
        ctx = self._context(context)
        drop = streaming_geometry(self.cfg, ctx).drop_extra_pre_encoded if drop_extra is None else drop_extra
        cache_len = state.cache_last_channel.size(2)
        if cache_len != ctx[0]:
            raise ValueError(f"state caches {cache_len} frames but att_context_size {list(ctx)} needs {ctx[0]}")
        x, lengths = self.pre_encode(chunk.transpose(1, 2), chunk_len)  # (B, T', D)
        x = x[:, drop:]  # (B, T, D)
        lengths = (lengths - drop).clamp(min=0)
        x, pos_emb = self.pos_enc(x, cache_len=cache_len)  # pos_emb (1, 2(C+T)-1, D)
        t = x.size(1)
        pos = torch.arange(cache_len + t, device=x.device)[None, :]  # (1, C+T)
        first_valid = cache_len - state.cache_last_channel_len[:, None]  # (B, 1)
        valid = (pos >= first_valid) & (pos < lengths[:, None] + cache_len)  # (B, C+T)
        att_mask, pad_mask = attention_masks(valid, ctx, t)  # (B, T, C+T), (B, T)
        channel, time = [], []
        for i, layer in enumerate(self.layers):
            x, c, k = layer(x, pos_emb, att_mask, pad_mask, state.cache_last_channel[i], state.cache_last_time[i])
            channel.append(c)
            time.append(k)
        next_len = (state.cache_last_channel_len + t).clamp(max=cache_len)  # (B,)
        next_state = EncoderState(torch.stack(channel), torch.stack(time), next_len)
        return x.transpose(1, 2), lengths, next_state  # (B, D, T)
