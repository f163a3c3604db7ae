"""The small default model and its optimisation recipe (frozen; stored in every training checkpoint).

Model: a hybrid RNNT + CTC cache-aware FastConformer, NeMo's ``fastconformer_hybrid_transducer_ctc_bpe_streaming``
scaled down: dw_striding 8x causal subsampling (64 channels), 6 layers of d_model 128, 4 heads, FFN x3, conv
kernel 9 with LayerNorm, multi-look-ahead ``att_context_size`` [[70,6],[70,13],[70,1],[70,0]] (the first,
480 ms, is the default), BPE 256, prediction net 128, joint 128: 2.36 M parameters with 256 pieces.
``pos_emb_max_len`` 1000 (80 s of offline input) keeps the exported rel-pos table at 1 MB instead of 5 MB.

Optimisation (NeMo's recipe): AdamW (0.9, 0.98), weight decay 1e-3, Noam schedule (linear warm-up to
``peak_lr``, then ``peak_lr * sqrt(warmup / step)``, floored at ``min_lr``), gradient clipping 1.0,
loss ``(1 - ctc_weight) * RNNT + ctc_weight * CTC`` with ctc_weight 0.3 (EncDecHybridRNNTCTCModel), both
'mean_batch' (per-utterance NLL averaged over the batch), FastEmit 5e-3, a look-ahead drawn per batch.
SpecAugment is off by default (``freq_masks = time_masks = 0``) and, when on, masks with each utterance's
mean, not NeMo's 0.0 (on un-normalized log-mel 0.0 is the loudest value). Measured on an H200: NeMo's 10
zero-valued time masks at peak lr 3e-3 collapsed to an encoder that ignored its input (the output prior, 100 %
WER, after 48 epochs); side by side for 4 minutes, 2 mean masks at lr 1.5e-3 were still on the prior plateau
while no masks at lr 1e-3 had left it (validation WER 91 % and falling). The shipped model was trained that way,
then continued on CPU from those weights (``--init-from``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ouvir.engine.features_config import FeatureConfig
from ouvir.models.config import CTCConfig, EncoderConfig, ModelConfig, RNNTConfig

CONTEXTS = ((70, 6), (70, 13), (70, 1), (70, 0))


def small_model_config(vocabulary: tuple[str, ...], d_model: int = 128, n_layers: int = 6, freq_masks: int = 0,
                       time_masks: int = 0, dropout: float = 0.1) -> ModelConfig:
    """The shipped small model's config for a tokenizer's pieces."""
    vocab = len(vocabulary)
    encoder = EncoderConfig(
        feat_in=80, n_layers=n_layers, d_model=d_model, n_heads=4, att_context_size=CONTEXTS,
        subsampling="dw_striding", subsampling_factor=8, subsampling_conv_channels=64, causal_downsampling=True,
        ff_expansion_factor=3, att_context_style="chunked_limited", att_context_probs=None, xscaling=True,
        untie_biases=True, pos_emb_max_len=1000, conv_kernel_size=9, conv_norm_type="layer_norm",
        dropout=dropout, dropout_pre_encoder=dropout, dropout_emb=0.0, dropout_att=dropout,
    )  # fmt: skip
    return ModelConfig(
        features=FeatureConfig(),
        encoder=encoder,
        vocabulary=tuple(vocabulary),
        ctc=CTCConfig(feat_in=d_model, num_classes=vocab),
        rnnt=RNNTConfig(vocab_size=vocab, pred_hidden=128, pred_rnn_layers=1, joint_hidden=128,
                        encoder_hidden=d_model, activation="relu", max_symbols=10,
                        pred_dropout=0.2, joint_dropout=0.2),
        spec_augment={"freq_masks": freq_masks, "time_masks": time_masks, "freq_width": 27, "time_width": 0.05,
                      "mask_value": "mean"},
    )


@dataclass(frozen=True)
class Recipe:
    """Everything that shapes the training trajectory; a resumed run keeps the checkpoint's."""

    vocab_size: int = 256
    d_model: int = 128
    n_layers: int = 6
    batch_seconds: float = 120.0  # padded audio seconds per batch
    max_duration: float = 20.0  # longer training utterances are skipped
    freq_masks: int = 0  # SpecAugment
    time_masks: int = 0
    peak_lr: float = 1e-3
    warmup_steps: int = 2000
    min_lr: float = 1e-5
    betas: tuple[float, float] = (0.9, 0.98)
    weight_decay: float = 1e-3
    grad_clip: float = 1.0
    ctc_weight: float = 0.3  # 1.0: a CTC-only phase (no prediction net, joint or transducer loss)
    freeze_encoder: bool = False  # train the prediction net and joint only (an RNNT head over a CTC-trained encoder)
    dropout: float = 0.1  # encoder dropout (NeMo's 0.1); the prediction net and joint keep 0.2
    fastemit_lambda: float = 5e-3
    augment: bool = True  # on-the-fly waveform augmentation (OnlineAugment) besides SpecAugment
    online_shift: float = 0.0  # share of training utterances given an on-the-fly voice shift (needs sox)
    online_telephone: float = 0.0  # share given an on-the-fly telephone channel (300-3400 Hz, mu-law)
    seed: int = 0
    init_from: str = ""  # an ouvir checkpoint whose weights and tokenizer start the run ("" = random init)
    extra: dict[str, Any] = field(default_factory=dict)  # free-form notes stored with the run

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Recipe:
        return cls(**{**d, "betas": tuple(d["betas"])})


def noam_factor(step: int, recipe: Recipe) -> float:
    """Learning rate at optimizer step ``step`` (1-based) divided by ``peak_lr``."""
    step = max(step, 1)
    warm = max(recipe.warmup_steps, 1)
    factor = min(step / warm, math.sqrt(warm / step))
    return max(factor, recipe.min_lr / recipe.peak_lr)
