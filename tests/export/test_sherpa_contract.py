"""The ONNX bundle keeps the sherpa-onnx / NeMo contract (shared/reference/sherpa-onnx-nemo-contract.md):
NeMo's exported encoder interface and metadata, NeMo's pad_and_drop streaming semantics, and sherpa-onnx
2.0.1 loads the files unchanged and decodes the test audio. Slow: uses the exported onnx bundles."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import soundfile as sf

from ouvir.engine.bundle import load_bundle
from ouvir.engine.features import log_mel
from ouvir.models.geometry import streaming_geometry
from ouvir.models.streaming import chunk_schedule
from ouvir.models.train.wer import edit_distance

from .conftest import MODELS

pytestmark = pytest.mark.slow


def test_encoder_interface_is_nemos_export(bundles, nemo_dir):
    """encoder_next: NeMo's names, dtypes and static dims (onnx/onnx_io.json, NeMo 3.0.0's own export)."""
    nemo = json.loads((nemo_dir / "onnx" / "onnx_io.json").read_text())["io"]["encoder-hybrid_multi.onnx"]
    bundle = load_bundle(bundles("hybrid_multi", "onnx"))
    graph = bundle.lookahead().encoder_next
    for ours, theirs in ((graph.info["inputs"], nemo["inputs"]), (graph.info["outputs"], nemo["outputs"])):
        assert [t["name"] for t in ours] == [t["name"] for t in theirs]
        assert [t["dtype"] for t in ours] == [{"float": "float32"}.get(t["dtype"], t["dtype"]) for t in theirs]
        for o, t in zip(ours, theirs, strict=True):  # NeMo's static dims are static here too
            assert len(o["shape"]) == len(t["shape"])
            assert all(od == td for od, td in zip(o["shape"], t["shape"], strict=True) if isinstance(td, int))
    assert graph.info["inputs"][0]["shape"][1:] == [80, 121]  # sherpa reads feat_dim from the static dim 1
    assert [t["shape"][1:] for t in graph.info["inputs"][2:4]] == [[3, 70, 64], [3, 64, 8]]


@pytest.mark.parametrize("model", MODELS)
def test_sherpa_metadata_matches_the_graphs(bundles, nemo_dir, model):
    ref = json.loads((nemo_dir / f"{model}_reference.json").read_text())
    path = bundles(model, "onnx")
    bundle = load_bundle(path)
    for la in bundle.lookaheads.values():
        cfg = ref["streaming_cfg"]["c{}_{}".format(*la.att_context_size)] if model == "ctc_conformer" or \
            la.name == "70_13" else None
        for graph in (la.encoder_next, la.extra["sherpa_ctc"]):
            proto = onnx.load(path / graph.file, load_external_data=False)
            meta = {p.key: p.value for p in proto.metadata_props}
            dims = {i.name: [d.dim_value for d in i.type.tensor_type.shape.dim] for i in proto.graph.input}
            assert int(meta["window_size"]) == dims["audio_signal"][2] == la.encoder_next.info["chunk_frames"]
            assert int(meta["chunk_shift"]) == la.geometry["chunk_size"][1]
            assert [int(meta[f"cache_last_channel_dim{i}"]) for i in (1, 2, 3)] == dims["cache_last_channel"][1:]
            assert [int(meta[f"cache_last_time_dim{i}"]) for i in (1, 2, 3)] == dims["cache_last_time"][1:]
            assert int(meta["vocab_size"]) == len(bundle.tokens)
            assert int(meta["subsampling_factor"]) == {"hybrid_multi": 8, "ctc_conformer": 4}[model]
            if cfg is not None:
                assert int(meta["window_size"]) == cfg["chunk_size"][1] + cfg["pre_encode_cache_size"][1]
                assert int(meta["cache_last_channel_dim2"]) == cfg["last_channel_cache_size"]
            if model == "hybrid_multi":
                assert (meta["pred_rnn_layers"], meta["pred_hidden"]) == ("1", "32")
    tokens = (path / "tokens.txt").read_text().splitlines()
    assert tokens[-1] == f"<blk> {len(bundle.tokens)}" and len(tokens) == len(bundle.tokens) + 1


@pytest.mark.parametrize("model", MODELS)
def test_exported_encoder_reproduces_nemo_pad_and_drop_streaming(bundles, loaded_models, audio, nemo_dir, model):
    """Fed NeMo's pad_and_drop chunks (the mode NeMo's ONNX export assumes), encoder_next and the sherpa CTC
    model give NeMo's encoder output and CTC tokens for that mode."""
    z = np.load(nemo_dir / f"{model}_reference.npz")
    path = bundles(model, "onnx")
    bundle = load_bundle(path)
    la = bundle.lookahead()
    ctx = "c{}_{}".format(*la.att_context_size)
    cfg = loaded_models[model].config
    features = log_mel(audio, bundle.features, bundle.feature_window(), bundle.mel_filterbank())  # (F, T)
    geo = streaming_geometry(cfg.encoder, la.att_context_size, cfg.features.window_stride)
    encoder = ort.InferenceSession(str(path / la.encoder_next.file))
    ctc = ort.InferenceSession(str(path / la.extra["sherpa_ctc"].file))
    width = la.encoder_next.info["chunk_frames"]
    state = [np.zeros([1 if d == "B" else d for d in t["batch_first_shape"]], t["dtype"]) for t in la.state["tensors"]]
    encoded, argmax = [], []
    for ch in chunk_schedule(geo, features.shape[1], pad_and_drop=True):
        x = np.concatenate([np.zeros((features.shape[0], ch.zeros), np.float32),
                            features[:, ch.start - ch.cache : ch.stop]], axis=1)  # (F, n)
        feeds = [np.pad(x, ((0, 0), (0, width - x.shape[1])))[None], np.array([x.shape[1]]), *state]
        names = [i.name for i in encoder.get_inputs()]
        out, n, *next_state = encoder.run(None, dict(zip(names, feeds, strict=True)))
        log_probs, n_ctc, *_ = ctc.run(None, dict(zip(names, feeds, strict=True)))
        assert n_ctc.tolist() == n.tolist()
        encoded.append(out[0, :, : n[0]])
        argmax += log_probs[0, : n[0]].argmax(-1).tolist()
        state = next_state
    np.testing.assert_allclose(np.concatenate(encoded, axis=1), z[f"stream_pad.{ctx}.encoded_concat"][0],
                               rtol=0, atol=1e-4)
    assert argmax == z[f"stream_pad.{ctx}.ctc_argmax_cum"].tolist()


def sherpa_text(recognizer, wav) -> str:
    samples, rate = sf.read(str(wav), dtype="float32")
    stream = recognizer.create_stream()
    stream.accept_waveform(rate, samples)
    stream.accept_waveform(rate, np.zeros(int(0.66 * rate), np.float32))  # tail padding, as sherpa's clients do
    stream.input_finished()
    while recognizer.is_ready(stream):
        recognizer.decode_stream(stream)
    return recognizer.get_result_all(stream).text.strip()


def cer(ref: str, hyp: str) -> float:
    return edit_distance(list(ref), list(hyp)) / len(ref)


@pytest.mark.parametrize("model", MODELS)
def test_sherpa_onnx_loads_the_files_unchanged_and_decodes(bundles, nemo_dir, model):
    """sherpa-onnx 2.0.1 runs its own fbank (not NeMo's) on its own chunk grid (no zero prefix), so its text
    is near, not equal to, NeMo's; the fitted heads of ctc_conformer have small margins (README §3)."""
    sherpa_onnx = pytest.importorskip("sherpa_onnx")
    ref = json.loads((nemo_dir / f"{model}_reference.json").read_text())
    path = bundles(model, "onnx")
    bundle = load_bundle(path)
    wav = nemo_dir / "test_audio.wav"
    for la in bundle.lookaheads.values():
        text = ref["offline"]["c{}_{}".format(*la.att_context_size)]["ctc_text"]
        ctc = sherpa_onnx.OnlineRecognizer.from_nemo_ctc(
            model=str(path / la.extra["sherpa_ctc"].file), tokens=str(path / "tokens.txt"), feature_dim=80)
        assert cer(text, sherpa_text(ctc, wav)) <= (0.25 if model == "hybrid_multi" else 0.6)
        if "rnnt" in bundle.decoders:
            heads = bundle.heads
            transducer = sherpa_onnx.OnlineRecognizer.from_transducer(
                encoder=str(path / la.encoder_next.file), decoder=str(path / heads["rnnt_decoder"].file),
                joiner=str(path / heads["rnnt_joint"].file), tokens=str(path / "tokens.txt"),
                decoding_method="greedy_search")
            assert cer(text, sherpa_text(transducer, wav)) <= 0.1
