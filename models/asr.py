"""The ASR model: a cache-aware Conformer encoder with a CTC head and/or an RNNT prediction net + joint."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ouvir.models.config import ModelConfig
from ouvir.models.encoder import ConformerEncoder
from ouvir.models.heads import CTCHead, PredictorState, RNNTJoint, RNNTPredictor, predict
from ouvir.models.tokenizer import Tokenizer


class CheckpointError(ValueError):
    """Weights or files that do not fit the model (the message names the keys)."""


class ASRModel(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        self.encoder = ConformerEncoder(cfg.encoder)
        self.ctc = CTCHead(cfg.ctc) if cfg.ctc is not None else None
        self.predictor = RNNTPredictor(cfg.rnnt) if cfg.rnnt is not None else None
        self.joint = RNNTJoint(cfg.rnnt) if cfg.rnnt is not None else None

    def predict(self, token: torch.Tensor, state: PredictorState) -> tuple[torch.Tensor, PredictorState]:
        """token (B,) -> (joint.pred(prediction output) (B, J), next state)."""
        return predict(self.predictor, self.joint, token, state)

    def joint_enc(self, encoded: torch.Tensor) -> torch.Tensor:
        return self.joint.joint_enc(encoded)  # (B, T, D) -> (B, T, J)


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """A model with everything needed to run it: config, tokenizer and the front end's window / filterbank."""

    model: ASRModel
    config: ModelConfig
    tokenizer_model: bytes  # SentencePiece model proto
    window: np.ndarray  # (win_length,) float32 analysis window (NeMo preprocessor.featurizer.window)
    fb: np.ndarray  # (features, n_fft // 2 + 1) float32 mel filterbank (NeMo preprocessor.featurizer.fb)

    @property
    def tokenizer(self) -> Tokenizer:
        return Tokenizer(self.tokenizer_model)
