"""Conformer convolution module (NeMo ``ConformerConvolution`` with a causal depthwise conv).

pointwise_conv1 (D -> 2D) -> GLU -> zero padded frames -> depthwise causal conv (K taps on the previous
K-1 frames + the current one) -> ``batch_norm`` (a LayerNorm over channels, or an eval-mode BatchNorm1d
with running stats, per ``conv_norm_type``; NeMo's module name either way) -> Swish -> pointwise_conv2.
In streaming the K-1 left frames come from ``cache_last_time`` instead of zero padding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ConformerConvolution(nn.Module):
    def __init__(self, d_model: int, kernel_size: int, norm_type: str, use_bias: bool):
        super().__init__()
        self.layer_norm = norm_type == "layer_norm"  # normalises the last axis: channels must go last
        self.pointwise_conv1 = nn.Conv1d(d_model, 2 * d_model, kernel_size=1, bias=use_bias)
        self.depthwise_conv = nn.Conv1d(d_model, d_model, kernel_size, groups=d_model, bias=use_bias)
        if norm_type == "layer_norm":
            self.batch_norm: nn.Module = nn.LayerNorm(d_model)
        elif norm_type == "batch_norm":
            self.batch_norm = nn.BatchNorm1d(d_model)
        else:
            raise ValueError(f"conv_norm_type={norm_type!r} is not supported")
        self.activation = nn.SiLU()
        self.pointwise_conv2 = nn.Conv1d(d_model, d_model, kernel_size=1, bias=use_bias)

    @property
    def cache_size(self) -> int:
        return self.depthwise_conv.kernel_size[0] - 1

    def forward(self, x: torch.Tensor, pad_mask: torch.Tensor | None,
                cache: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``x`` (B, T, D), ``pad_mask`` (B, T) True = padded, ``cache`` (B, D, K-1).

        Returns (B, T, D) and the next cache (B, D, K-1): the last K-1 GLU outputs seen (None offline)."""
        x = F.glu(self.pointwise_conv1(x.transpose(1, 2)), dim=1)  # (B, D, T)
        if pad_mask is not None:
            x = x.masked_fill(pad_mask[:, None, :], 0.0)
        if cache is None:
            x = F.pad(x, (self.cache_size, 0))  # (B, D, K-1+T)
            next_cache = None
        else:
            x = torch.cat([cache, x], dim=2)  # (B, D, K-1+T)
            next_cache = x[:, :, x.size(2) - self.cache_size:]  # (B, D, K-1)
        x = self.depthwise_conv(x)  # (B, D, T)
        x = self.batch_norm(x.transpose(1, 2)).transpose(1, 2) if self.layer_norm else self.batch_norm(x)
        x = self.pointwise_conv2(self.activation(x))  # (B, D, T)
        return x.transpose(1, 2), next_cache  # (B, T, D)
