"""SpecAugment (Park 2019) as NeMo's ``SpectrogramAugmentation`` / ``SpecAugment`` applies it in training.

Per utterance: ``freq_masks`` bands, each starting at ``randint(0, F - freq_width)`` and
``randint(0, freq_width)`` bins wide; ``time_masks`` spans, each ``randint(0, W)`` frames wide starting at
``randint(0, max(1, length - W))``, where ``W = time_width`` frames, or ``max(1, int(length * time_width))``
when ``time_width`` is a fraction. Masked entries are set to ``mask_value``: 0.0 as NeMo, or ``"mean"``, each
utterance's mean over its valid frames (as lhotse does). With un-normalized log-mel (``normalize: NA``,
values about -16.6 in silence and 0 at full scale) a 0.0 mask is the loudest possible sound; the mean is not.
Bounds are inclusive, as Python's ``random.randint`` that NeMo uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class SpecAugmentConfig:
    freq_masks: int = 0
    time_masks: int = 0
    freq_width: int = 10
    time_width: float = 0.1  # frames if >= 1, else a fraction of each utterance's length
    mask_value: float | str = 0.0  # a number, or "mean": each utterance's mean over its valid frames

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SpecAugmentConfig:
        """From ``ModelConfig.spec_augment`` (NeMo's ``spec_augment`` section)."""
        d = {k: v for k, v in d.items() if k != "_target_"}
        unknown = sorted(set(d) - {"freq_masks", "time_masks", "freq_width", "time_width", "mask_value"})
        if unknown:
            raise ValueError(f"spec_augment: unsupported setting(s) {unknown}")
        mask = d.get("mask_value", 0.0)
        if isinstance(mask, str) and mask != "mean":
            raise ValueError(f"spec_augment.mask_value={mask!r}: expected a number or 'mean'")
        return cls(**d)

    @property
    def active(self) -> bool:
        return self.freq_masks > 0 or self.time_masks > 0


def _randint(high: torch.Tensor, shape: tuple[int, ...], gen: torch.Generator | None) -> torch.Tensor:
    """Uniform integers in [0, high] (inclusive, per row of ``high`` (B,)) -> shape (B, n) int64."""
    u = torch.rand(shape, generator=gen, device=high.device)  # (B, n)
    return (u * (high[:, None].float() + 1)).floor().long().clamp(max=high[:, None])


def spec_augment(
    features: torch.Tensor, lengths: torch.Tensor, cfg: SpecAugmentConfig, gen: torch.Generator | None = None
) -> torch.Tensor:
    """features (B, F, T), lengths (B,) -> masked copy (B, F, T)."""
    batch, bins, frames = features.shape
    device = features.device
    keep = torch.ones(batch, bins, frames, dtype=torch.bool, device=device)  # (B, F, T)
    if cfg.freq_masks > 0:
        top = torch.full((batch,), max(bins - cfg.freq_width, 0), device=device)
        start = _randint(top, (batch, cfg.freq_masks), gen)  # (B, M)
        width = _randint(torch.full((batch,), cfg.freq_width, device=device), (batch, cfg.freq_masks), gen)
        f = torch.arange(bins, device=device)[None, None, :]  # (1, 1, F)
        band = (f >= start[..., None]) & (f < (start + width)[..., None])  # (B, M, F)
        keep &= ~band.any(dim=1)[:, :, None]
    if cfg.time_masks > 0:
        lengths = lengths.to(device)
        if cfg.time_width < 1:
            span = (lengths.float() * cfg.time_width).long().clamp(min=1)  # (B,)
        else:
            span = torch.full((batch,), int(cfg.time_width), device=device)
        top = (lengths - span).clamp(min=1)  # (B,)
        start = _randint(top, (batch, cfg.time_masks), gen)  # (B, M)
        width = _randint(span, (batch, cfg.time_masks), gen)  # (B, M)
        t = torch.arange(frames, device=device)[None, None, :]  # (1, 1, T)
        span_mask = (t >= start[..., None]) & (t < (start + width)[..., None])  # (B, M, T)
        keep &= ~span_mask.any(dim=1)[:, None, :]
    if cfg.mask_value != "mean":
        return features.masked_fill(~keep, float(cfg.mask_value))
    valid = (torch.arange(frames, device=device)[None, :] < lengths.to(device)[:, None])[:, None, :]  # (B, 1, T)
    mean = (features * valid).sum(dim=(1, 2)) / (valid.sum(dim=(1, 2)) * bins).clamp(min=1)  # (B,)
    return torch.where(keep, features, mean[:, None, None])
