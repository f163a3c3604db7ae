"""fp32 ONNX and ExecuTorch bundles of both NeMo fixtures: every look-ahead's exported steps equal the eager
step, the engine fed through its scheduler decodes exactly NeMo's default-mode streaming tokens, and the
bundle carries what its manifest says. Slow: exports every look-ahead (times in conftest.bundles)."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch

from ouvir.engine.backends import open_backend
from ouvir.engine.bundle import BundleError, add_verify_parser, load_bundle
from ouvir.engine.events import Final
from ouvir.engine.recognizer import Recognizer
from ouvir.models.heads import PredictorState

from .conftest import MODELS, eager_steps

pytestmark = pytest.mark.slow
CASES = [(model, fmt) for fmt in ("onnx", "pte") for model in MODELS]


@pytest.mark.parametrize(("model", "fmt"), CASES)
def test_every_lookahead_steps_like_eager_over_chained_steps(bundles, loaded_models, audio, model, fmt):
    """The backend carries its own caches from step to step; outputs and caches stay within 1e-4 of eager.
    The last chunk is shorter than the graph: zero-padded with its real length, its valid frames match."""
    path, loaded = bundles(model, fmt), loaded_models[model]
    bundle = load_bundle(path)
    assert [la.att_context_size for la in bundle.lookaheads.values()] == list(loaded.config.encoder.att_context_size)
    padded_steps = 0
    for la in bundle.lookaheads.values():
        backend = open_backend(path, fmt, "fp32", round(la.lookahead_ms))
        steps = eager_steps(loaded, la.att_context_size, audio)
        assert len(steps) >= 3
        state = backend.initial_state(1)
        for k, step in enumerate(steps):
            graph = la.encoder_first if k == 0 else la.encoder_next
            encoded, lengths, state = backend.encode(step.features.numpy(), step.features_len.numpy(), state, k == 0)
            assert lengths.tolist() == step.encoded_len.tolist()
            np.testing.assert_allclose(encoded, step.encoded.transpose(1, 2).numpy(), rtol=0, atol=1e-4)
            if step.features.shape[2] < graph.info["chunk_frames"]:
                padded_steps += 1  # the caches have moved past the padding: the stream ends here
                assert k == len(steps) - 1
                continue
            for ours, eager in zip(state, step.state_out, strict=True):
                np.testing.assert_allclose(ours, eager.numpy(), rtol=0, atol=1e-4)
    assert padded_steps >= 1


@pytest.mark.parametrize(("model", "fmt"), CASES)
def test_heads_equal_eager(bundles, loaded_models, model, fmt):
    m = loaded_models[model].model
    backend = open_backend(bundles(model, fmt), fmt, "fp32")
    encoded = np.random.default_rng(0).normal(size=(2, 5, m.config.encoder.d_model)).astype(np.float32)  # (B, T, D)
    with torch.inference_mode():
        eager = m.ctc(torch.from_numpy(encoded).transpose(1, 2)).numpy()
        np.testing.assert_allclose(backend.ctc_log_probs(encoded), eager, rtol=0, atol=1e-4)
        if m.predictor is None:
            return
        state, eager_state = backend.initial_predictor_state(2), m.predictor.initial_state(2)
        for token in ([128, 128], [5, 17], [3, 127]):  # <SOS> (= blank), then tokens
            prediction, state = backend.predict(np.array(token), state)
            eager_pred, eager_state = m.predict(torch.tensor(token), eager_state)
            logits = backend.joint(encoded[:, 0], prediction)
            eager_logits = m.joint(m.joint_enc(torch.from_numpy(encoded[:, 0])), eager_pred)  # (B, V+1)
            np.testing.assert_allclose(logits, eager_logits.numpy(), rtol=0, atol=1e-4)
            for ours, ref in zip(state, eager_state, strict=True):
                np.testing.assert_allclose(ours, ref.numpy(), rtol=0, atol=1e-5)
        assert isinstance(eager_state, PredictorState)
        # every frame of both streams in one call; the .pte joint takes them in pieces of its fixed row count
        assert backend.batched_joint
        rows = encoded.reshape(-1, encoded.shape[-1])  # (B * T, D)
        assert fmt == "onnx" or len(rows) % backend._joint_rows, "the last piece should need padding"
        t = encoded.shape[1]
        with torch.inference_mode():
            eager_logits = m.joint(m.joint_enc(torch.from_numpy(rows)), eager_pred.repeat_interleave(t, 0))
        logits = backend.joint(rows, np.repeat(prediction, t, axis=0))
        np.testing.assert_allclose(logits, eager_logits.numpy(), rtol=0, atol=1e-4)


@pytest.mark.parametrize(("model", "fmt"), CASES)
def test_engine_decodes_nemo_streaming_tokens(bundles, nemo_dir, audio, model, fmt):
    """Recognizer (features, scheduler, numpy greedy decoders) on the exported graphs: NeMo's default-mode
    streaming token ids (and RNNT frames) for every look-ahead and decoder."""
    ref = json.loads((nemo_dir / f"{model}_reference.json").read_text())
    z = np.load(nemo_dir / f"{model}_reference.npz")
    path = bundles(model, fmt)
    bundle = load_bundle(path)
    for la in bundle.lookaheads.values():
        ctx = "c{}_{}".format(*la.att_context_size)
        assert {k: la.geometry[k] for k in ref["streaming_cfg"][ctx]} == ref["streaming_cfg"][ctx]
        for decoder in bundle.decoders:
            rec = Recognizer.open(path, precision="fp32", lookahead_ms=round(la.lookahead_ms), decoder=decoder)
            assert rec.backend.name == fmt
            stream = rec.create_stream()
            stream.accept_waveform(audio, 16000)
            stream.input_finished()
            (final,) = [e for e in rec.decode(stream) if isinstance(e, Final)]
            assert [t.id for t in final.tokens] == z[f"stream.{ctx}.{decoder}_token_ids"].tolist(), (ctx, decoder)
            assert final.text == ref["streaming"][ctx][f"{decoder}_text"]
            if decoder == "rnnt":
                assert [t.frame for t in final.tokens] == z[f"stream.{ctx}.rnnt_timestamps"].tolist()


def test_pte_methods_are_delegated_to_xnnpack(bundles):
    """Compute runs in XNNPACK, each encoder step in one partition; what stays on portable kernels is the
    length and mask bookkeeping, the prediction net's embedding lookup and state stacking, and log_softmax
    (which XNNPACK lacks)."""
    bookkeeping = {"aten_add_tensor", "aten_sub_tensor", "aten_mul_tensor", "aten_clamp_default",
                   "aten_div_tensor_mode", "aten_lt_tensor", "aten_ge_tensor", "aten_bitwise_and_tensor",
                   "aten_bitwise_not_default", "aten_view_copy_default", "aten_slice_copy_tensor",
                   "dim_order_ops__to_dim_order_copy_default", "aten__log_softmax_default",
                   "aten_embedding_default", "aten_cat_default"}
    for model in MODELS:
        report = load_bundle(bundles(model, "pte")).manifest["export"]["delegation"]
        for method, r in report.items():
            assert set(r["portable"]) <= bookkeeping, (method, r["portable"])
            if method.startswith("encoder"):
                assert r["partitions"] == 1 and r["delegated_ops"] > 2 * r["portable_ops"], (method, r)


@pytest.mark.parametrize("fmt", ["onnx", "pte"])
def test_verify_and_tampered_bundle_refused(bundles, tmp_path, fmt, capsys):
    """``ouvir verify`` passes the exported bundle; a changed graph is refused by name when opened."""
    src = bundles("ctc_conformer", fmt)
    parser = argparse.ArgumentParser()
    add_verify_parser(parser.add_subparsers())
    args = parser.parse_args(["verify", str(src)])
    assert args.func(args) == 0
    assert f"backend {fmt} fp32, look-aheads 64_7 (default 64_7), decoders ctc" in capsys.readouterr().out
    copy = tmp_path / "copy"
    copy.mkdir()
    for f in load_bundle(src).manifest["files"]:
        (copy / f).parent.mkdir(parents=True, exist_ok=True)
        (copy / f).write_bytes((src / f).read_bytes())
    (copy / "manifest.json").write_bytes((src / "manifest.json").read_bytes())
    graph = load_bundle(copy).lookahead().encoder_next.file
    data = bytearray((copy / graph).read_bytes())
    data[len(data) // 2] ^= 1
    (copy / graph).write_bytes(bytes(data))
    with pytest.raises(BundleError, match=f"file '{graph}' does not match its sha256 in manifest.json"):
        open_backend(copy, fmt, "fp32")
    args = parser.parse_args(["verify", str(copy)])
    assert args.func(args) == 1
    assert f"FAILED: bundle {copy}: file '{graph}' does not match its sha256" in capsys.readouterr().out


@pytest.mark.parametrize("fmt", ["onnx", "pte"])
def test_lookaheads_share_the_weights(bundles, loaded_models, fmt):
    """Eight encoder graphs (four look-aheads x first / later step) store the weights once: unshared they
    would take >= 8x the parameter bytes; what is stored beyond 1x is structure and the per-look-ahead
    relative-position constants."""
    bundle = load_bundle(bundles("hybrid_multi", fmt))
    param_bytes = 4 * sum(p.numel() for p in loaded_models["hybrid_multi"].model.parameters())
    assert sum(1 for la in bundle.lookaheads.values() for _ in (la.encoder_first, la.encoder_next)) == 8
    stored = sum(f["bytes"] for name, f in bundle.manifest["files"].items() if name.endswith((".bin", ".pte")))
    assert param_bytes < stored < 2.5 * param_bytes, (stored, param_bytes)
