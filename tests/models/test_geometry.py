"""Streaming geometry and state spec: a worked example, NeMo's own streaming_cfg for every fixture context."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
import yaml

from ouvir.models.config import EncoderConfig, from_nemo
from ouvir.models.geometry import streaming_geometry
from ouvir.models.state import EncoderState, state_spec
from tests.conftest import FIXTURE_MODELS, NEMO_FIXTURES

FIELDS = ("chunk_size", "shift_size", "pre_encode_cache_size", "drop_extra_pre_encoded", "valid_out_len",
          "last_channel_cache_size", "cache_drop_size")


def _encoder_cfg(name: str) -> EncoderConfig:
    return from_nemo(yaml.safe_load((NEMO_FIXTURES / f"{name}_model_config.yaml").read_text())).encoder


def _enc(factor: int = 8, ctx: tuple[tuple[int, int], ...] = ((70, 13),), kernel: int = 9) -> EncoderConfig:
    return EncoderConfig(feat_in=80, n_layers=3, d_model=64, n_heads=4, att_context_size=ctx,
                         subsampling_factor=factor, conv_kernel_size=kernel)


def test_worked_example_hybrid_70_13():
    geo = streaming_geometry(_enc(), (70, 13))
    assert geo.chunk_size == (105, 112) and geo.shift_size == (105, 112)
    assert geo.pre_encode_cache_size == (0, 9)
    assert geo.drop_extra_pre_encoded == 2 and geo.valid_out_len == 14
    assert geo.last_channel_cache_size == 70 and geo.cache_drop_size == 0 and geo.conv_cache_size == 8
    assert geo.input_columns(0) == 105 and geo.input_columns(1) == 121 and geo.input_columns(7) == 121
    assert [geo.drop_extra(s) for s in range(3)] == [0, 2, 2]
    assert geo.frame_ms == 80.0 and geo.lookahead_ms == 1040.0 and geo.chunk_ms == 1120.0
    d = json.loads(json.dumps(geo.to_dict()))
    assert d["chunk_size"] == [105, 112] and d["lookahead_ms"] == 1040.0


@pytest.mark.parametrize(("right", "ms"), [(0, 0.0), (1, 80.0), (6, 480.0), (13, 1040.0)])
def test_lookahead_ms(right, ms):
    geo = streaming_geometry(_enc(), (70, right))
    assert geo.lookahead_ms == ms
    assert geo.chunk_ms == (right + 1) * 80.0


@pytest.mark.parametrize("factor", [2, 4, 8, 16])
def test_factors(factor):
    geo = streaming_geometry(_enc(factor, ((64, 3),)))
    assert geo.chunk_size == (1 + 3 * factor, factor + 3 * factor)
    assert geo.pre_encode_cache_size == (0, factor + 1)
    assert geo.drop_extra_pre_encoded == 2 and geo.valid_out_len == 4


def test_rejects_bad_context():
    with pytest.raises(ValueError, match="left % \\(right \\+ 1\\)"):
        streaming_geometry(_enc(), (70, 2))


@pytest.mark.parametrize("name", FIXTURE_MODELS)
def test_matches_nemo_streaming_cfg(name):
    enc = _encoder_cfg(name)
    z = np.load(NEMO_FIXTURES / f"{name}_reference.npz")
    ref = json.loads((NEMO_FIXTURES / f"{name}_reference.json").read_text())["streaming_cfg"]
    assert len(ref) == len(enc.att_context_size)
    for left, right in enc.att_context_size:
        geo = streaming_geometry(enc, (left, right))
        for field in FIELDS:
            ours = getattr(geo, field)
            nemo = z[f"streaming_cfg.c{left}_{right}.{field}"]
            assert np.array_equal(np.asarray(ours), nemo), (left, right, field, ours, nemo)


@pytest.mark.parametrize("name", FIXTURE_MODELS)
def test_state_spec_matches_fixture_caches(name):
    enc = _encoder_cfg(name)
    z = np.load(NEMO_FIXTURES / f"{name}_reference.npz")
    ctx = enc.default_context
    spec = state_spec(enc, ctx)
    state = spec.initial(batch=1)
    assert isinstance(state, EncoderState)
    for field, tensor in zip(EncoderState._fields, state, strict=True):
        ref = z[f"stream.c{ctx[0]}_{ctx[1]}.step000.{field}_in"]
        assert tuple(tensor.shape) == ref.shape and not tensor.any()
        assert str(tensor.dtype).removeprefix("torch.") == str(ref.dtype)


def test_state_spec_names_shapes_and_manifest():
    spec = state_spec(_enc(), (70, 13))
    assert spec.input_names == ("cache_last_channel", "cache_last_time", "cache_last_channel_len")
    assert spec.output_names == ("cache_last_channel_next", "cache_last_time_next", "cache_last_channel_next_len")
    assert [t.sized(2) for t in spec.tensors] == [(3, 2, 70, 64), (3, 2, 64, 8), (2,)]
    assert [t.batch_first() for t in spec.tensors] == [("B", 3, 70, 64), ("B", 3, 64, 8), ("B",)]
    s = spec.initial(batch=2, dtype=torch.float64)
    assert s.cache_last_channel.dtype == torch.float64 and s.cache_last_channel_len.dtype == torch.int64
    d = json.loads(json.dumps(spec.to_dict()))
    assert d["layout"] == "layer_first"
    assert d["tensors"][0] == {"name": "cache_last_channel", "next_name": "cache_last_channel_next",
                               "shape": [3, "B", 70, 64], "batch_first_shape": ["B", 3, 70, 64], "dtype": "float32"}
    assert state_spec(dataclasses.replace(_enc(), conv_kernel_size=31), (64, 7)).tensors[1].shape[-1] == 30
