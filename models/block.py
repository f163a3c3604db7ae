"""Macaron Conformer layer (NeMo ``ConformerLayer``): x + FF1/2, + MHSA, + Conv, + FF2/2, norm_out."""

from __future__ import annotations

import torch
from torch import nn

from ouvir.models.attention import RelPositionMultiHeadAttention
from ouvir.models.config import EncoderConfig
from ouvir.models.conv import ConformerConvolution


class ConformerFeedForward(nn.Module):
    def __init__(self, d_model: int, d_ff: int, dropout: float, use_bias: bool):
        super().__init__()
        self.linear1 = nn.Linear(d_model, d_ff, bias=use_bias)
        self.activation = nn.SiLU()
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(d_ff, d_model, bias=use_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear2(self.dropout(self.activation(self.linear1(x))))  # (B, T, D)


class ConformerLayer(nn.Module):
    def __init__(self, cfg: EncoderConfig, pos_bias_u: nn.Parameter | None = None,
                 pos_bias_v: nn.Parameter | None = None):
        super().__init__()
        d, d_ff = cfg.d_model, cfg.d_model * cfg.ff_expansion_factor
        self.norm_feed_forward1 = nn.LayerNorm(d)
        self.feed_forward1 = ConformerFeedForward(d, d_ff, cfg.dropout, cfg.use_bias)
        self.norm_conv = nn.LayerNorm(d)
        self.conv = ConformerConvolution(d, cfg.conv_kernel_size, cfg.conv_norm_type, cfg.use_bias)
        self.norm_self_att = nn.LayerNorm(d)
        self.self_attn = RelPositionMultiHeadAttention(cfg.n_heads, d, cfg.dropout_att, cfg.use_bias,
                                                       pos_bias_u, pos_bias_v)
        self.norm_feed_forward2 = nn.LayerNorm(d)
        self.feed_forward2 = ConformerFeedForward(d, d_ff, cfg.dropout, cfg.use_bias)
        self.dropout = nn.Dropout(cfg.dropout)
        self.norm_out = nn.LayerNorm(d)

    def forward(
        self,
        x: torch.Tensor,
        pos_emb: torch.Tensor,
        att_mask: torch.Tensor,
        pad_mask: torch.Tensor,
        cache_last_channel: torch.Tensor | None = None,
        cache_last_time: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """``x`` (B, T, D); caches (B, C, D) / (B, D, K-1) in streaming, None offline.

        Returns (B, T, D) and the next caches (None offline)."""
        res = x + 0.5 * self.dropout(self.feed_forward1(self.norm_feed_forward1(x)))
        att, cache_last_channel = self.self_attn(self.norm_self_att(res), pos_emb, att_mask, cache_last_channel)
        res = res + self.dropout(att)
        conv, cache_last_time = self.conv(self.norm_conv(res), pad_mask, cache_last_time)
        res = res + self.dropout(conv)
        res = res + 0.5 * self.dropout(self.feed_forward2(self.norm_feed_forward2(res)))
        return self.norm_out(res), cache_last_channel, cache_last_time  # (B, T, D)
