"""Encoder over NeMo's configuration space with random weights: the large recipe's shapes, NeMo key names,
and the cache-aware guarantee (streaming == offline for look-ahead > 0) for every subsampling variant."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
import yaml

from ouvir.models.config import EncoderConfig, from_nemo
from ouvir.models.encoder import ConformerEncoder
from ouvir.models.geometry import streaming_geometry
from tests.conftest import FIXTURE_MODELS, NEMO_FIXTURES
from tests.models.test_encoder_parity import nemo_chunks

pytestmark = pytest.mark.usefixtures("one_torch_thread")
ATOL = 1e-4
LARGE_ENCODER_PARAMS = 17 * 6_312_448 + 1_581_568  # 17 layers + dw_striding pre_encode (256 ch, out 2816 -> 512)




def _small(**kw) -> EncoderConfig:
    base = dict(feat_in=80, n_layers=2, d_model=32, n_heads=4, att_context_size=((12, 3), (12, 1), (12, 0)),
                subsampling_conv_channels=8, conv_kernel_size=5)
    return EncoderConfig(**{**base, **kw})


def _random_encoder(cfg: EncoderConfig, seed: int = 0) -> ConformerEncoder:
    torch.manual_seed(seed)
    enc = ConformerEncoder(cfg)
    with torch.no_grad():
        for p in enc.parameters():
            p.add_(0.1 * torch.randn_like(p))  # LayerNorm/pos_bias start constant: make them matter
        for m in enc.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.normal_(0.0, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    return enc.eval()


def _stream(enc: ConformerEncoder, features: torch.Tensor, ctx: tuple[int, int]) -> torch.Tensor:
    geo = streaming_geometry(enc.cfg, ctx)
    state = enc.state_spec(ctx).initial(batch=features.size(0))
    outs = []
    for step, chunk in enumerate(nemo_chunks(features, geo)):
        lengths = torch.full((features.size(0),), chunk.size(-1))
        out, _, state = enc.step(chunk, lengths, state, ctx, geo.drop_extra(step))
        outs.append(out)
    return torch.cat(outs, dim=-1)  # (B, D, T')


def test_large_recipe_builds_and_streams():
    recipe = NEMO_FIXTURES / "conf" / "fastconformer_hybrid_transducer_ctc_bpe_streaming.yaml"
    cfg = yaml.safe_load(recipe.read_text())
    enc_cfg = from_nemo(cfg, vocabulary=[f"p{i}" for i in range(1024)]).encoder
    enc = ConformerEncoder(enc_cfg).eval()
    assert sum(p.numel() for p in enc.parameters()) == LARGE_ENCODER_PARAMS
    assert enc.pre_encode.out.weight.shape == (512, 256 * 11)
    geo = enc.geometry()
    state = enc.state_spec().initial(batch=1)
    with torch.no_grad():
        for step in range(3):
            chunk = torch.randn(1, 80, geo.input_columns(step))
            out, out_len, state = enc.step(chunk, torch.tensor([chunk.size(-1)]), state,
                                           drop_extra=geo.drop_extra(step))
            assert out.shape == (1, 512, 14) and out_len.tolist() == [14]
            assert state.cache_last_channel.shape == (17, 1, 70, 512)
            assert state.cache_last_time.shape == (17, 1, 512, 8)
            assert state.cache_last_channel_len.tolist() == [14 * (step + 1)]
            assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", FIXTURE_MODELS)
def test_parameter_names_are_nemo_keys(name):
    ref = json.loads((NEMO_FIXTURES / f"{name}_state_dict.json").read_text())
    want = {e["key"].removeprefix("encoder."): tuple(e["shape"]) for e in ref if e["key"].startswith("encoder.")}
    cfg = from_nemo(yaml.safe_load((NEMO_FIXTURES / f"{name}_model_config.yaml").read_text())).encoder
    got = {k: tuple(v.shape) for k, v in ConformerEncoder(cfg).state_dict().items()}
    assert got == want


def test_batch_norm_and_shared_biases_use_nemo_keys():
    enc = ConformerEncoder(_small(conv_norm_type="batch_norm", untie_biases=False))
    keys = enc.state_dict().keys()
    assert {"layers.1.conv.batch_norm.running_mean", "layers.1.conv.batch_norm.num_batches_tracked",
            "layers.0.self_attn.pos_bias_u", "layers.1.self_attn.pos_bias_v"} <= set(keys)
    assert "pos_enc.pe" not in keys and not any(k.startswith("pos_bias") for k in keys)
    assert enc.layers[0].self_attn.pos_bias_u is enc.layers[1].self_attn.pos_bias_u
    assert enc.layers[0].self_attn.pos_bias_v is enc.layers[1].self_attn.pos_bias_v


VARIANTS = [
    dict(subsampling="striding", subsampling_factor=4),
    dict(subsampling="striding", subsampling_factor=8),
    dict(subsampling="dw_striding", subsampling_factor=4),
    dict(subsampling="dw_striding", subsampling_factor=8),
    dict(subsampling="dw_striding", subsampling_factor=8, conv_norm_type="batch_norm", xscaling=False,
         untie_biases=False, use_bias=False),
    dict(subsampling="striding", subsampling_factor=4, conv_norm_type="batch_norm", xscaling=False,
         untie_biases=False),
    dict(subsampling="dw_striding", subsampling_factor=2),
    dict(subsampling="dw_striding", subsampling_factor=16),
]


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: "-".join(str(x) for x in v.values()))
def test_streaming_equals_offline_for_lookahead(variant):
    enc = _random_encoder(_small(**variant))
    features = torch.randn(1, 80, 1 + 16 * 18)  # 1 + factor * k columns: the streaming buffer uses them all
    with torch.no_grad():
        for ctx in enc.cfg.att_context_size:
            offline, offline_len = enc(features, torch.tensor([features.size(-1)]), ctx)
            streamed = _stream(enc, features, ctx)
            assert streamed.shape == offline.shape and offline_len.item() == offline.size(-1)
            err = (streamed - offline).abs().max().item()
            if ctx[1] > 0 or enc.cfg.subsampling_factor <= 4:
                assert err <= ATOL, (ctx, err)
            else:  # r = 0, >= 3 stages: step 1's zero-padded pre-encode cache reaches a kept frame (pitfall 5)
                assert err > ATOL, (ctx, err)


def test_padded_batch_matches_single_utterances():
    enc = _random_encoder(_small(conv_norm_type="batch_norm"))
    a, b = torch.randn(1, 80, 240), torch.randn(1, 80, 150)
    batch = torch.cat([a, torch.nn.functional.pad(b, (0, 90), value=3.0)])  # padding holds junk, not zeros
    with torch.no_grad():
        out, lengths = enc(batch, torch.tensor([240, 150]), (12, 3))
        ref_a, len_a = enc(a, torch.tensor([240]), (12, 3))
        ref_b, len_b = enc(b, torch.tensor([150]), (12, 3))
    assert lengths.tolist() == [len_a.item(), len_b.item()] == [31, 20]
    assert (out[:1] - ref_a).abs().max().item() <= ATOL
    assert (out[1:, :, :20] - ref_b).abs().max().item() <= ATOL


def test_batched_streams_match_single_streams():
    enc = _random_encoder(_small())
    features = torch.randn(2, 80, 200)
    with torch.no_grad():
        both = _stream(enc, features, (12, 1))
        one = torch.cat([_stream(enc, features[i:i + 1], (12, 1)) for i in range(2)])
    assert (both - one).abs().max().item() <= ATOL


def test_training_mode_applies_dropout_and_backpropagates():
    enc = _random_encoder(dataclasses.replace(_small(), dropout=0.3)).train()
    features = torch.randn(2, 80, 120)
    out, _ = enc(features, torch.tensor([120, 100]))
    out2, _ = enc(features, torch.tensor([120, 100]))
    assert not torch.allclose(out, out2)
    out.square().mean().backward()
    assert all(p.grad is not None for p in enc.parameters())
    assert enc.pre_encode.conv[0].weight.grad.abs().sum() > 0
