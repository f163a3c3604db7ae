"""NVIDIA's published cache-aware streaming models (tests/fixtures/configs/README.md: recipes, overrides and
their sources). Each config, read by ``from_nemo`` with every setting it uses, has the published shapes and
size; with seeded random weights and 2 of its encoder layers (real widths, heads, features, vocabulary and
look-aheads) it streams the fixture audio at every look-ahead through torch and an exported ONNX bundle with
the same tokens (ExecuTorch too for parakeet_realtime_eou, the cheapest to lower on 2 cores)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from sentencepiece import sentencepiece_model_pb2

from ouvir.engine.backends import open_backend
from ouvir.engine.features import hann_window, log_mel, mel_filterbank
from ouvir.engine.hub import REGISTRY
from ouvir.engine.tokens import Detokenizer
from ouvir.export.bundle import export_bundle
from ouvir.export.calibration import RecordingEncoder, decode
from ouvir.models.asr import ASRModel, LoadedModel
from ouvir.models.checkpoint import save_checkpoint
from ouvir.models.config import ModelConfig, from_nemo
from ouvir.models.geometry import streaming_geometry
from ouvir.models.large import EMISSION_RATE, calibrate_blank, pseudo_word_tokenizer
from ouvir.models.state import state_spec
from ouvir.models.tokenizer import Tokenizer
from tests.conftest import NEMO_FIXTURES, REPO

pytestmark = pytest.mark.usefixtures("one_torch_thread")
CONFIGS = REPO / "tests" / "fixtures" / "configs"
HYBRID = NEMO_FIXTURES / "conf" / "fastconformer_hybrid_transducer_ctc_bpe_streaming.yaml"
TRANSDUCER = CONFIGS / "fastconformer_transducer_bpe_streaming.yaml"
EOU = CONFIGS / "asr_eou_fastconformer_transducer_bpe_streaming.yaml"
MULTI = [[70, 13], [70, 6], [70, 1], [70, 0]]
TEST_LAYERS = 2  # random weights: every layer is alike, and 2 keep the step chained through layer caches


@dataclass(frozen=True)
class Published:
    recipe: Path
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


@pytest.fixture(scope="module")
def bpe() -> bytes:
    return pseudo_word_tokenizer(seed=0)  # 1024 pieces: the published models' vocabulary size


def with_special(tokenizer: bytes, pieces: tuple[str, ...]) -> bytes:
    """``tokenizer`` with ``pieces`` appended as user-defined symbols (how NeMo adds <EOU> / <EOB>)."""
    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(tokenizer)
    for piece in pieces:
        proto.pieces.add(piece=piece, score=0.0, type=sentencepiece_model_pb2.ModelProto.SentencePiece.USER_DEFINED)
    return proto.SerializeToString()


def published_config(name: str, vocabulary: tuple[str, ...]) -> ModelConfig:
    spec = PUBLISHED[name]
    cfg = yaml.safe_load(spec.recipe.read_text())
    for path, value in spec.overrides.items():
        *parents, key = path.split(".")
        node = cfg["model"]
        for part in parents:
            node = node[part]
        node[key] = value
    return from_nemo(cfg, vocabulary=list(vocabulary))


def parameters(cfg: ModelConfig) -> int:
    """The full model's parameter count, from 1- and 2-layer builds (layers are alike)."""
    one, two = (sum(p.numel() for p in ASRModel(_layers(cfg, n)).parameters()) for n in (1, 2))
    return one + (cfg.encoder.n_layers - 1) * (two - one)


def _layers(cfg: ModelConfig, n: int) -> ModelConfig:
    return dataclasses.replace(cfg, encoder=dataclasses.replace(cfg.encoder, n_layers=n))


def _pieces(bpe: bytes, name: str) -> tuple[bytes, tuple[str, ...]]:
    tokenizer = with_special(bpe, PUBLISHED[name].special)
    return tokenizer, Tokenizer(tokenizer).pieces


@pytest.mark.parametrize("name", PUBLISHED)
def test_published_config_has_the_published_shapes(bpe, name):
    spec = PUBLISHED[name]
    assert name in REGISTRY
    _, pieces = _pieces(bpe, name)
    cfg = published_config(name, pieces)
    enc = cfg.encoder
    assert len(cfg.vocabulary) == 1024 + len(spec.special)
    assert parameters(cfg) == spec.parameters
    chunks = [streaming_geometry(enc, ctx, cfg.features.window_stride).chunk_ms for ctx in enc.att_context_size]
    assert [round(ms) for ms in chunks] == list(spec.chunk_ms)
    state = state_spec(enc, enc.default_context).initial(1)
    assert tuple(state.cache_last_channel.shape) == (enc.n_layers, 1, 70, enc.d_model)
    assert tuple(state.cache_last_time.shape) == (enc.n_layers, 1, enc.d_model, 8)
    assert cfg.features.features == enc.feat_in == spec.overrides.get("preprocessor.features", 80)
    ends = Detokenizer(cfg.vocabulary).utterance_ends
    assert ends == set(range(1024, 1024 + len(spec.special)))  # <EOU> / <EOB>: endpoints, never text


def _random_checkpoint(path: Path, cfg: ModelConfig, tokenizer: bytes, audio: np.ndarray) -> Path:
    torch.manual_seed(0)
    model = ASRModel(cfg).eval()
    window, fb = hann_window(cfg.features), mel_filterbank(cfg.features)
    calibrate_blank(model, log_mel(audio, cfg.features, window, fb), EMISSION_RATE, list(cfg.encoder.att_context_size))
    save_checkpoint(path, LoadedModel(model, cfg, tokenizer, window, fb))
    return path


@pytest.mark.slow
@pytest.mark.parametrize("name", PUBLISHED)
def test_published_config_streams_through_torch_and_exported_graphs(bpe, name, tmp_path):
    audio = np.load(NEMO_FIXTURES / "test_audio_f32.npy")
    tokenizer, pieces = _pieces(bpe, name)
    cfg = _layers(published_config(name, pieces), TEST_LAYERS)
    checkpoint = _random_checkpoint(tmp_path / "model.ouvir", cfg, tokenizer, audio)
    formats = ("onnx", "pte") if PUBLISHED[name].special else ("onnx",)
    bundles = {fmt: export_bundle(checkpoint, tmp_path / fmt, fmt, progress=False) for fmt in formats}
    for ctx in cfg.encoder.att_context_size:
        ms = round(streaming_geometry(cfg.encoder, ctx, cfg.features.window_stride).lookahead_ms)
        for decoder in cfg.decoders:
            eager = decode(RecordingEncoder(open_backend(checkpoint, "torch", None, ms)), decoder, audio)
            assert len(eager.tokens) > 10, (ctx, decoder)
            for fmt, bundle in bundles.items():
                got = decode(RecordingEncoder(open_backend(bundle, fmt, None, ms)), decoder, audio)
                assert got.tokens == eager.tokens, (fmt, ctx, decoder)
                err = max(float(np.abs(a - b).max()) for a, b in zip(got.encoded, eager.encoded, strict=True))
                assert err < 1e-3, (fmt, ctx, err)
