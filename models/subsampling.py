"""Causal convolutional subsampling (NeMo ``ConvSubsampling`` with ``is_causal=True``).

``striding``: ``factor = 2**n`` full 3x3 stride-2 convs, ReLU after each (``conv.0, conv.2, ...``).
``dw_striding``: a full 3x3 stride-2 conv + ReLU, then ``n - 1`` times [depthwise 3x3 stride 2, pointwise
1x1, ReLU] (``conv.0, conv.2, conv.3, conv.5, conv.6, ...``). Every stride-2 conv pads time and frequency
with 2 zeros left and 1 right, so each stage maps ``L -> L // 2 + 1`` on both axes. Like NeMo >= 2025
(``MaskedConvSequential``), time frames at or beyond each stage's length are zeroed before every layer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CausalConv2D(nn.Conv2d):
    """3x3 stride-2 conv padded (2 left, 1 right) on both time and frequency."""

    def __init__(self, in_channels: int, out_channels: int, groups: int = 1):
        super().__init__(in_channels, out_channels, kernel_size=3, stride=2, padding=0, groups=groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, (2, 1, 2, 1)))  # (B, C, T, F) -> (B, C', T//2+1, F//2+1)


def stage_length(length: torch.Tensor | int, stages: int) -> torch.Tensor | int:
    """Output length after ``stages`` causal stride-2 stages: ``L -> L // 2 + 1`` each."""
    for _ in range(stages):
        length = length // 2 + 1
    return length


def _time_mask(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    valid = torch.arange(x.size(2), device=x.device)[None, :] < lengths[:, None]  # (B, T)
    return x * valid[:, None, :, None].to(x.dtype)  # (B, C, T, F)


class ConvSubsampling(nn.Module):
    def __init__(self, subsampling: str, factor: int, feat_in: int, feat_out: int, channels: int):
        super().__init__()
        stages = factor.bit_length() - 1
        if factor < 2 or 2**stages != factor:
            raise ValueError(f"subsampling_factor={factor} must be a power of 2 >= 2")
        self.stages = stages
        layers: list[nn.Module] = [CausalConv2D(1, channels), nn.ReLU()]
        for _ in range(stages - 1):
            if subsampling == "dw_striding":
                layers += [CausalConv2D(channels, channels, groups=channels), nn.Conv2d(channels, channels, 1)]
            elif subsampling == "striding":
                layers.append(CausalConv2D(channels, channels))
            else:
                raise ValueError(f"subsampling={subsampling!r} is not supported")
            layers.append(nn.ReLU())
        self.conv = nn.Sequential(*layers)
        self.out = nn.Linear(channels * stage_length(feat_in, stages), feat_out)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` (B, T, F) features, ``lengths`` (B,) -> (B, T', D), (B,) int64."""
        x = x.unsqueeze(1)  # (B, 1, T, F)
        lengths = lengths.to(torch.int64)
        for layer in self.conv:
            x = layer(_time_mask(x, lengths))
            if isinstance(layer, CausalConv2D):
                lengths = stage_length(lengths, 1)
        x = _time_mask(x, lengths)  # (B, C, T', F')
        b, c, t, f = x.shape
        return self.out(x.transpose(1, 2).reshape(b, t, c * f)), lengths  # (B, T', D)
