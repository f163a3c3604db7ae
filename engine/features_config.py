"""Frozen settings of the log-mel front end (NeMo's AudioToMelSpectrogramPreprocessor field names).

Lives in engine/ because the numpy front end is shared by the runtime, the parity checks and training.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

SUPPORTED_WINDOWS = ("hann",)
SUPPORTED_NORMALIZE = ("NA",)


@dataclass(frozen=True)
class FeatureConfig:
    sample_rate: int = 16000
    window_size: float = 0.025  # seconds -> win_length samples
    window_stride: float = 0.01  # seconds -> hop samples
    window: str = "hann"
    features: int = 80  # mel bins
    n_fft: int = 512
    normalize: str = "NA"
    dither: float = 1e-5  # training only; never applied at inference
    pad_to: int = 0
    preemph: float = 0.97
    log_zero_guard_value: float = 2.0**-24
    mag_power: float = 2.0
    frame_splicing: int = 1

    @property
    def win_length(self) -> int:
        return round(self.window_size * self.sample_rate)

    @property
    def hop_length(self) -> int:
        return round(self.window_stride * self.sample_rate)

    def validate(self) -> FeatureConfig:
        if self.window not in SUPPORTED_WINDOWS:
            raise ValueError(f"preprocessor.window={self.window!r} is not supported (only {SUPPORTED_WINDOWS})")
        if self.normalize not in SUPPORTED_NORMALIZE:
            raise ValueError(
                f"preprocessor.normalize={self.normalize!r} is not supported: streaming models use 'NA'"
            )
        if self.frame_splicing != 1:
            raise ValueError(f"preprocessor.frame_splicing={self.frame_splicing} is not supported (only 1)")
        if self.pad_to != 0:
            raise ValueError(f"preprocessor.pad_to={self.pad_to} is not supported (only 0)")
        if self.win_length > self.n_fft:
            raise ValueError(f"window of {self.win_length} samples is longer than n_fft={self.n_fft}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FeatureConfig:
        return cls(**d).validate()
