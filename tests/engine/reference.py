"""NeMo fixture helpers for the engine tests (no torch at import time).

``ReplayBackend`` is a Backend whose encoder replays NeMo's recorded streaming steps (checking the chunk
it is fed against NeMo's) and whose heads are numpy re-implementations over the ``.nemo`` head weights:
CTC = Conv1d(k=1) + log_softmax, RNNT = embedding + LSTM + ``joint.pred`` / ``joint.enc`` + ReLU + out.
"""

from __future__ import annotations

import functools
import io
import itertools
import json
import tarfile
from pathlib import Path

import numpy as np

from ouvir.engine.backends.base import ChunkGeometry, EncoderState, ModelInfo, PredictorState
from ouvir.engine.features_config import FeatureConfig

SUBSAMPLING = {"hybrid_multi": 8, "ctc_conformer": 4}
DECODERS = {"hybrid_multi": ("rnnt", "ctc"), "ctc_conformer": ("ctc",)}
HEAD_KEYS = {
    "ctc_w": ("ctc_decoder.decoder_layers.0.weight", "decoder.decoder_layers.0.weight"),
    "ctc_b": ("ctc_decoder.decoder_layers.0.bias", "decoder.decoder_layers.0.bias"),
    "embed": ("decoder.prediction.embed.weight",),
    "w_ih": ("decoder.prediction.dec_rnn.lstm.weight_ih_l0",),
    "w_hh": ("decoder.prediction.dec_rnn.lstm.weight_hh_l0",),
    "b_ih": ("decoder.prediction.dec_rnn.lstm.bias_ih_l0",),
    "b_hh": ("decoder.prediction.dec_rnn.lstm.bias_hh_l0",),
    "pred_w": ("joint.pred.weight",),
    "pred_b": ("joint.pred.bias",),
    "enc_w": ("joint.enc.weight",),
    "enc_b": ("joint.enc.bias",),
    "out_w": ("joint.joint_net.2.weight",),
    "out_b": ("joint.joint_net.2.bias",),
}


@functools.cache
def reference(nemo_dir: Path, model: str) -> tuple[dict, dict[str, np.ndarray]]:
    """(the fixture JSON, the fixture npz as a dict)."""
    with np.load(nemo_dir / f"{model}_reference.npz") as z:
        arrays = {k: z[k] for k in z.files}
    return json.loads((nemo_dir / f"{model}_reference.json").read_text()), arrays


def geometry(ref: dict, model: str, ctx: str) -> ChunkGeometry:
    cfg = ref["streaming_cfg"][ctx]
    factor = SUBSAMPLING[model]
    left, right = (int(v) for v in ctx[1:].split("_"))
    return ChunkGeometry(
        chunk_size=tuple(cfg["chunk_size"]),
        shift_size=tuple(cfg["shift_size"]),
        pre_encode_cache_size=tuple(cfg["pre_encode_cache_size"]),
        drop_extra_pre_encoded=cfg["drop_extra_pre_encoded"],
        sampling_frames=(1, factor),
        subsampling_factor=factor,
        att_context_size=(left, right),
    )


def model_info(nemo_dir: Path, model: str, ctx: str) -> ModelInfo:
    ref, _ = reference(nemo_dir, model)
    return ModelInfo(
        features=FeatureConfig(),
        vocabulary=tuple(ref["tokenizer"]["vocab"]),
        geometry=geometry(ref, model, ctx),
        decoders=DECODERS[model],
        max_symbols=10,
    )


def step_encoded(nemo_dir: Path, model: str, ctx: str) -> list[np.ndarray]:
    """NeMo's encoder output of every streaming step, each (T, D)."""
    ref, z = reference(nemo_dir, model)
    concat = z[f"stream.{ctx}.encoded_concat"][0].T  # (Te, D)
    bounds = np.cumsum([0, *ref["streaming"][ctx]["encoded_len_per_step"]])
    return [concat[a:b] for a, b in itertools.pairwise(bounds)]


def head_weights(nemo_path: Path) -> dict[str, np.ndarray]:
    """The CTC / RNNT head tensors of a .nemo, as float32 numpy (uses torch.load: call it in tests only)."""
    import torch

    with tarfile.open(nemo_path) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("model_weights.ckpt"))
        sd = torch.load(io.BytesIO(tar.extractfile(member).read()), map_location="cpu", weights_only=True)
    return {name: sd[k].numpy().astype(np.float32) for name, keys in HEAD_KEYS.items() for k in keys if k in sd}


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


class NumpyHeads:
    batched_joint = True
    batch_exact = False  # replays one stream

    def __init__(self, w: dict[str, np.ndarray]) -> None:
        self.w = w

    def ctc_log_probs(self, encoded: np.ndarray) -> np.ndarray:
        logits = encoded @ self.w["ctc_w"][:, :, 0].T + self.w["ctc_b"]  # (B, T, V+1)
        shifted = logits - logits.max(axis=-1, keepdims=True)
        return (shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))).astype(np.float32)

    def initial_predictor_state(self, batch: int = 1) -> PredictorState:
        hidden = self.w["w_hh"].shape[1]
        return PredictorState(np.zeros((1, batch, hidden), np.float32), np.zeros((1, batch, hidden), np.float32))

    def predict(self, token: np.ndarray, state: PredictorState) -> tuple[np.ndarray, PredictorState]:
        w = self.w
        x = w["embed"][token]  # (B, H)
        gates = x @ w["w_ih"].T + w["b_ih"] + state.h[0] @ w["w_hh"].T + w["b_hh"]  # (B, 4H)
        i, f, g, o = np.split(gates, 4, axis=-1)
        c = _sigmoid(f) * state.c[0] + _sigmoid(i) * np.tanh(g)  # (B, H)
        h = _sigmoid(o) * np.tanh(c)  # (B, H)
        return h @ w["pred_w"].T + w["pred_b"], PredictorState(h[None], c[None])  # (B, J)

    def joint(self, encoded_frame: np.ndarray, prediction: np.ndarray) -> np.ndarray:
        w = self.w
        hidden = np.maximum(encoded_frame @ w["enc_w"].T + w["enc_b"] + prediction, 0.0)  # (B, J)
        return hidden @ w["out_w"].T + w["out_b"]  # (B, V+1)


class ReplayBackend(NumpyHeads):
    """One stream's worth of NeMo's recorded encoder steps, played back in order, chunks checked."""

    name = "replay"
    precision = "fp32"

    def __init__(self, nemo_dir: Path, model: str, ctx: str, weights: dict[str, np.ndarray], atol: float = 5e-4):
        super().__init__(weights)
        self.ref, self.z = reference(nemo_dir, model)
        self.ctx = ctx
        self.info = model_info(nemo_dir, model, ctx)
        self.steps = step_encoded(nemo_dir, model, ctx)
        self.atol = atol
        self.step = 0
        self.max_chunk_error = 0.0  # largest |chunk - NeMo's chunk| seen

    def initial_state(self, batch: int = 1) -> EncoderState:
        """NeMo's initial (all-zero) caches; every context of a fixture model has the same shapes."""
        left, right = self.ref["default_att_context_size"]
        return EncoderState(*(self.z[f"stream.c{left}_{right}.step000.{n}_in"] for n in EncoderState._fields))

    def encode(self, chunk: np.ndarray, chunk_len: np.ndarray, state: EncoderState, first: bool):
        k, ctx, z = self.step, self.ctx, self.z
        schedule = self.ref["streaming"][ctx]
        assert first == (k == 0)
        assert chunk.shape[2] == int(chunk_len[0]) == schedule["chunk_frames_per_step"][k]
        key = f"stream.{ctx}.step{k:03d}"
        if f"{key}.chunk" in z:
            err = float(np.abs(chunk - z[f"{key}.chunk"]).max())
            self.max_chunk_error = max(self.max_chunk_error, err)
            assert err <= self.atol, f"step {k}: chunk differs from NeMo's by {err}"
            previous = f"stream.{ctx}.step{k - 1:03d}" if k else None
            expected_in = [z[f"{previous}.{n}_out"] if previous else z[f"{key}.{n}_in"] for n in EncoderState._fields]
            assert all(np.array_equal(a, b) for a, b in zip(state, expected_in, strict=True)), "state not carried"
            state = EncoderState(*(z[f"{key}.{n}_out"] for n in EncoderState._fields))
        encoded = self.steps[k][None]  # (1, T, D)
        self.step += 1
        return encoded, np.array([encoded.shape[1]], np.int64), state
