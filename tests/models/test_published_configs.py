"""NVIDIA's published cache-aware streaming models (ouvir.models.published; tests/fixtures/configs/README.md:
recipes, overrides and their sources). Each config, read by ``from_nemo`` with every setting it uses, has the published
shapes and size; with seeded random weights and 2 of its encoder layers (real widths, heads, features,
vocabulary and look-aheads) it streams the fixture audio at every look-ahead through torch, an exported ONNX
bundle and an ExecuTorch program with the same tokens. The full-depth builds (17 / 24 layers) run the same
export code; their sizes and speed are measured by ``ouvir bench --config NAME`` (bench/published/)."""

from __future__ import annotations

import numpy as np
import pytest

from ouvir.engine.backends import open_backend
from ouvir.engine.bench.cli import published_default_ms
from ouvir.engine.hub import REGISTRY
from ouvir.engine.tokens import Detokenizer
from ouvir.export.bundle import export_bundle
from ouvir.export.calibration import RecordingEncoder, decode
from ouvir.models.asr import ASRModel
from ouvir.models.geometry import streaming_geometry
from ouvir.models.large import pseudo_word_tokenizer, recipe_path
from ouvir.models.published import PUBLISHED, build_published, published_config, with_special
from ouvir.models.state import state_spec
from ouvir.models.tokenizer import Tokenizer
from tests.conftest import NEMO_FIXTURES, REPO

pytestmark = pytest.mark.usefixtures("one_torch_thread")
CONFIGS = REPO / "tests" / "fixtures" / "configs"
TEST_LAYERS = 2  # random weights: every layer is alike, and 2 keep the step chained through layer caches


@pytest.fixture(scope="module")
def bpe() -> bytes:
    return pseudo_word_tokenizer(seed=0)  # 1024 pieces: the published models' vocabulary size


def parameters(name: str, pieces: tuple[str, ...], n_layers: int) -> int:
    """The full model's parameter count, from 1- and 2-layer builds (layers are alike)."""
    one, two = (sum(p.numel() for p in ASRModel(published_config(name, pieces, n)).parameters()) for n in (1, 2))
    return one + (n_layers - 1) * (two - one)


def _pieces(bpe: bytes, name: str) -> tuple[str, ...]:
    return Tokenizer(with_special(bpe, PUBLISHED[name].special)).pieces


def test_the_shipped_recipes_are_the_documented_ones():
    for recipe in {spec.recipe for spec in PUBLISHED.values()}:
        documented = CONFIGS / recipe if (CONFIGS / recipe).is_file() else NEMO_FIXTURES / "conf" / recipe
        assert recipe_path(recipe).read_text() == documented.read_text()


@pytest.mark.parametrize("name", PUBLISHED)
def test_published_config_has_the_published_shapes(bpe, name):
    spec = PUBLISHED[name]
    assert name in REGISTRY
    pieces = _pieces(bpe, name)
    cfg = published_config(name, pieces)
    enc = cfg.encoder
    assert len(cfg.vocabulary) == 1024 + len(spec.special)
    assert parameters(name, pieces, enc.n_layers) == spec.parameters
    geos = [streaming_geometry(enc, ctx, cfg.features.window_stride) for ctx in enc.att_context_size]
    assert [round(geo.chunk_ms) for geo in geos] == list(spec.chunk_ms)
    assert enc.default_context == enc.att_context_size[0]
    assert published_default_ms(name) == round(geos[0].lookahead_ms)  # what `ouvir bench --config NAME` runs
    state = state_spec(enc, enc.default_context).initial(1)
    assert tuple(state.cache_last_channel.shape) == (enc.n_layers, 1, 70, enc.d_model)
    assert tuple(state.cache_last_time.shape) == (enc.n_layers, 1, enc.d_model, 8)
    assert cfg.features.features == enc.feat_in == spec.overrides.get("preprocessor.features", 80)
    ends = Detokenizer(cfg.vocabulary).utterance_ends
    assert ends == set(range(1024, 1024 + len(spec.special)))  # <EOU> / <EOB>: endpoints, never text


# The 80 / 480 / 1040 ms hybrids are the multi model's recipe at one of its look-aheads (their shapes are tested
# above): streaming them through every format again would add ~10 minutes to CI and test nothing new.
STREAMED = [n for n in PUBLISHED if not n.endswith(("_80ms", "_480ms", "_1040ms"))]


@pytest.mark.slow
@pytest.mark.parametrize("name", STREAMED)
def test_published_config_streams_through_torch_and_exported_graphs(name, tmp_path):
    audio = np.load(NEMO_FIXTURES / "test_audio_f32.npy")
    checkpoint = tmp_path / "model.ouvir"
    info = build_published(checkpoint, name, seed=0, audio=audio, n_layers=TEST_LAYERS)
    cfg = published_config(name, _pieces(pseudo_word_tokenizer(seed=0), name), TEST_LAYERS)
    assert info["att_context_size"] == [list(c) for c in cfg.encoder.att_context_size]
    bundles = {fmt: export_bundle(checkpoint, tmp_path / fmt, fmt, progress=False) for fmt in ("onnx", "pte")}
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
