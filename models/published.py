"""NVIDIA's published cache-aware streaming models as configs: NeMo's training recipe of each family (shipped
in ``models/recipes/``; sources: tests/fixtures/configs/README.md) with the checkpoint's architecture applied
as overrides.

The checkpoints themselves are not here (no network where ouvir is built); ``build_published`` writes one with
seeded random weights, the blank bias calibrated like ``--config large`` (models/large.py), so that its size
and speed can be measured (``ouvir bench --config NAME``) and every look-ahead streamed through each backend
(tests/models/test_published_configs.py). torch is imported inside the builders only: ``ouvir bench`` reads
``PUBLISHED`` without it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ouvir.models.large import EMISSION_RATE, recipe_path

HYBRID = "fastconformer_hybrid_transducer_ctc_bpe_streaming.yaml"
TRANSDUCER = "fastconformer_transducer_bpe_streaming.yaml"
EOU = "asr_eou_fastconformer_transducer_bpe_streaming.yaml"
MULTI = [[70, 13], [70, 6], [70, 1], [70, 0]]


@dataclass(frozen=True)
class Published:
    recipe: str  # a file in models/recipes/
    overrides: dict[str, Any]  # dotted path under ``model`` -> the checkpoint's value
    parameters: int  # ouvir's count for the full model
    chunk_ms: tuple[int, ...]  # (look-ahead + 1 frame) per att_context_size entry
    special: tuple[str, ...] = ()  # pieces after the 1024 BPE pieces


PUBLISHED = {
    "stt_en_fastconformer_hybrid_large_streaming_multi": Published(
        HYBRID, {"encoder.att_context_size": MULTI}, 114_752_514, (1120, 560, 160, 80)),
    "stt_en_fastconformer_hybrid_large_streaming_80ms": Published(
        HYBRID, {"encoder.att_context_size": [70, 1]}, 114_752_514, (160,)),
    "stt_en_fastconformer_hybrid_large_streaming_480ms": Published(
        HYBRID, {"encoder.att_context_size": [70, 6]}, 114_752_514, (560,)),
    "stt_en_fastconformer_hybrid_large_streaming_1040ms": Published(
        HYBRID, {"encoder.att_context_size": [70, 13]}, 114_752_514, (1120,)),
    "nemotron-speech-streaming-en-0.6b": Published(
        TRANSDUCER, {"encoder.n_layers": 24, "encoder.d_model": 1024, "encoder.use_bias": False,
                     "preprocessor.features": 128, "decoder.prednet.pred_rnn_layers": 2,
                     "encoder.att_context_size": MULTI[::-1]}, 618_084_865, (80, 160, 560, 1120)),
    "parakeet_realtime_eou_120m-v1": Published(
        EOU, {"preprocessor.features": 128, "encoder.att_context_size": [70, 1]}, 115_015_683, (160,),
        special=("<EOU>", "<EOB>")),
}


def with_special(tokenizer: bytes, pieces: tuple[str, ...]) -> bytes:
    """``tokenizer`` with ``pieces`` appended as user-defined symbols (how NeMo adds <EOU> / <EOB>)."""
    from sentencepiece import sentencepiece_model_pb2

    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(tokenizer)
    for piece in pieces:
        proto.pieces.add(piece=piece, score=0.0, type=sentencepiece_model_pb2.ModelProto.SentencePiece.USER_DEFINED)
    return proto.SerializeToString()


def published_config(name: str, vocabulary: tuple[str, ...], n_layers: int | None = None) -> Any:
    """The ``ModelConfig`` of ``name``; ``n_layers`` replaces the encoder's depth (tests: layers are alike)."""
    import yaml

    from ouvir.models.config import from_nemo

    spec = PUBLISHED[name]
    cfg = yaml.safe_load(recipe_path(spec.recipe).read_text())
    for path, value in spec.overrides.items():
        *parents, key = path.split(".")
        node = cfg["model"]
        for part in parents:
            node = node[part]
        node[key] = value
    config = from_nemo(cfg, vocabulary=list(vocabulary))
    if n_layers is None:
        return config
    return dataclasses.replace(config, encoder=dataclasses.replace(config.encoder, n_layers=n_layers))


def build_published(path: Path, name: str, seed: int, audio: np.ndarray, n_layers: int | None = None,
                    rate: float = EMISSION_RATE) -> dict[str, Any]:
    """Write ``name`` with seeded random weights as an ouvir checkpoint at ``path``, its blank bias calibrated
    on ``audio`` at every look-ahead; returns what was built."""
    import torch

    from ouvir.engine.features import hann_window, log_mel, mel_filterbank
    from ouvir.models.asr import ASRModel, LoadedModel
    from ouvir.models.checkpoint import save_checkpoint
    from ouvir.models.large import calibrate_blank, pseudo_word_tokenizer
    from ouvir.models.tokenizer import Tokenizer

    spec = PUBLISHED[name]
    tokenizer = with_special(pseudo_word_tokenizer(seed), spec.special)
    cfg = published_config(name, Tokenizer(tokenizer).pieces, n_layers)
    torch.manual_seed(seed)
    model = ASRModel(cfg).eval()
    window, fb = hann_window(cfg.features), mel_filterbank(cfg.features)
    contexts = list(cfg.encoder.att_context_size)
    biases = calibrate_blank(model, log_mel(audio, cfg.features, window, fb), rate, contexts)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(path, LoadedModel(model, cfg, tokenizer, window, fb))
    return {
        "recipe": spec.recipe,
        "published": name,
        "parameters": sum(p.numel() for p in model.parameters()),
        "att_context_size": [list(c) for c in contexts],
        "seed": seed,
        "vocabulary": len(cfg.vocabulary),
        "emission_rate_target": rate,
        "calibration_s": len(audio) / cfg.features.sample_rate,
        "blank_bias_shift": biases,
    }
