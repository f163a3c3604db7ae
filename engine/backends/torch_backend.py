"""The eager PyTorch backend: ouvir.models run on numpy in, numpy out. The only engine module importing torch.

Opened by ``open_backend`` (backends/__init__.py) for a ``.nemo`` file (models/nemo.py) or an ouvir
checkpoint (models/checkpoint.py). fp32 only: int8 models come as exported bundles (onnx / pte). On
``device="cuda"`` the model lives on the GPU and each call moves its numpy arrays there and back.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ouvir.engine.backends.base import ChunkGeometry, EncoderState, ModelInfo, PredictorState
from ouvir.models.asr import LoadedModel
from ouvir.models.geometry import StreamingGeometry, streaming_geometry
from ouvir.models.heads import PredictorState as TorchPredictorState
from ouvir.models.state import EncoderState as TorchEncoderState
from ouvir.models.state import state_spec


def open(path: Path, precision: str | None, lookahead_ms: int | None, threads: int | None = None,
         device: str = "cpu") -> TorchBackend:
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device cuda: torch {torch.__version__} sees no CUDA device")
    if precision not in (None, "fp32"):
        raise ValueError(f"the torch backend runs fp32 only, not {precision}: export an int8 bundle (onnx / pte)")
    if path.suffix == ".nemo":
        from ouvir.models.nemo import load_nemo

        loaded = load_nemo(path)
    else:
        from ouvir.models.checkpoint import load_checkpoint

        loaded = load_checkpoint(path)
    if threads:
        torch.set_num_threads(threads)
    return TorchBackend(loaded, select_context(loaded, lookahead_ms), device)


def geometries(loaded: LoadedModel) -> list[StreamingGeometry]:
    cfg = loaded.config
    return [streaming_geometry(cfg.encoder, ctx, cfg.features.window_stride) for ctx in cfg.encoder.att_context_size]


def select_context(loaded: LoadedModel, lookahead_ms: int | None) -> tuple[int, int]:
    """The attention context whose look-ahead is ``lookahead_ms`` (None: the model's default)."""
    if lookahead_ms is None:
        return loaded.config.encoder.default_context
    options = geometries(loaded)
    for geo in options:
        if round(geo.lookahead_ms) == lookahead_ms:
            return geo.att_context_size
    have = ", ".join(f"{round(g.lookahead_ms)} ms {list(g.att_context_size)}" for g in options)
    raise ValueError(f"the model has no {lookahead_ms} ms look-ahead; it has {have}")


def chunk_geometry(geo: StreamingGeometry) -> ChunkGeometry:
    return ChunkGeometry(
        chunk_size=geo.chunk_size,
        shift_size=geo.shift_size,
        pre_encode_cache_size=geo.pre_encode_cache_size,
        drop_extra_pre_encoded=geo.drop_extra_pre_encoded,
        sampling_frames=(1, geo.subsampling_factor),  # NeMo ConvSubsampling.get_sampling_frames()
        subsampling_factor=geo.subsampling_factor,
        att_context_size=geo.att_context_size,
    )


class TorchBackend:
    name = "torch"
    precision = "fp32"
    batched_joint = True
    batch_exact = True  # fp32: a batch's rows are computed independently

    def __init__(self, loaded: LoadedModel, context: tuple[int, int], device: str = "cpu") -> None:
        cfg = loaded.config
        self.device = torch.device(device)
        self.model = loaded.model.eval().to(device)
        self.context = context
        self.state_spec = state_spec(cfg.encoder, context)
        self.info = ModelInfo(
            features=cfg.features,
            vocabulary=cfg.vocabulary,
            geometry=chunk_geometry(streaming_geometry(cfg.encoder, context, cfg.features.window_stride)),
            decoders=cfg.decoders,
            max_symbols=cfg.rnnt.max_symbols if cfg.rnnt is not None else 0,
            window=loaded.window,
            filterbank=loaded.fb,
        )

    def initial_state(self, batch: int = 1) -> EncoderState:
        return EncoderState(*(t.numpy() for t in self.state_spec.initial(batch)))

    @torch.inference_mode()
    def encode(
        self, chunk: np.ndarray, chunk_len: np.ndarray, state: EncoderState, first: bool
    ) -> tuple[np.ndarray, np.ndarray, EncoderState]:
        encoded, lengths, nxt = self.model.encoder.step(
            self._in(chunk),  # (B, F, T)
            self._in(chunk_len),  # (B,)
            TorchEncoderState(*(self._in(np.ascontiguousarray(s)) for s in state)),
            context=self.context,
            drop_extra=0 if first else None,
        )  # encoded (B, D, T')
        return _out(encoded.transpose(1, 2)), _out(lengths), EncoderState(*(_out(t) for t in nxt))

    @torch.inference_mode()
    def ctc_log_probs(self, encoded: np.ndarray) -> np.ndarray:
        if self.model.ctc is None:
            raise ValueError("this model has no CTC head")
        return _out(self.model.ctc(self._in(encoded).transpose(1, 2)))  # (B, T', V+1)

    @torch.inference_mode()
    def predict(self, token: np.ndarray, state: PredictorState) -> tuple[np.ndarray, PredictorState]:
        out, nxt = self.model.predict(
            self._in(token), TorchPredictorState(self._in(state.h), self._in(state.c))
        )  # (B, J): joint.pred(g)
        return _out(out), PredictorState(_out(nxt.h), _out(nxt.c))

    @torch.inference_mode()
    def joint(self, encoded_frame: np.ndarray, prediction: np.ndarray) -> np.ndarray:
        enc = self.model.joint_enc(self._in(encoded_frame))  # (B, J)
        return _out(self.model.joint(enc, self._in(prediction)))  # (B, V+1)

    def initial_predictor_state(self, batch: int = 1) -> PredictorState:
        h, c = self.model.predictor.initial_state(batch)  # (L, B, H)
        return PredictorState(_out(h), _out(c))

    def _in(self, x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(x).to(self.device)


def _out(t: torch.Tensor) -> np.ndarray:
    return t.cpu().numpy()

