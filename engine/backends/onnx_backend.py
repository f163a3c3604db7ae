"""The ONNX Runtime backend: runs a bundle's ONNX graphs (export/onnx_export.py), numpy in, numpy out.

Encoder graphs have NeMo's exported interface: batch-first caches, a fixed time axis per graph. Step 0
uses ``encoder_first`` (nothing dropped), later steps ``encoder_next``. A shorter last chunk is padded
with zero columns to the graph's width, ``length`` keeping its real width; only the valid frames are
returned. The RNNT decoder / joiner are sherpa-onnx's graphs: the prediction handed to ``joint`` is the
raw prediction-network output (B, H). No torch.

Every graph has a dynamic batch axis (export/graphs.py ``trace``), so ``Recognizer.decode_streams`` runs many
streams in one call - except on dynamically quantized bundles (``batch_exact`` False, see ``OnnxBackend``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ouvir.engine.backends.base import EncoderState, PredictorState
from ouvir.engine.backends.bundled import BundledBackend, load_for
from ouvir.engine.bundle import Bundle, Graph, Lookahead


def open(path: Path, precision: str | None, lookahead_ms: int | None, threads: int | None = None,
         device: str = "cpu") -> OnnxBackend:
    bundle = load_for(path, "onnx", precision)
    return OnnxBackend(bundle, bundle.select(lookahead_ms), threads, execution_providers(device))


def execution_providers(device: str) -> list[str]:
    """ONNX Runtime's execution providers for ``device``; "cuda" needs the onnxruntime-gpu wheel."""
    if device == "cpu":
        return ["CPUExecutionProvider"]
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        raise RuntimeError(f"onnxruntime {ort.__version__} has no CUDAExecutionProvider (pip install onnxruntime-gpu)")
    return ["CUDAExecutionProvider", "CPUExecutionProvider"]


def layer_first(x: np.ndarray) -> np.ndarray:
    return x.swapaxes(0, 1)  # (B, L, ...) <-> (L, B, ...)


def batch_first(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x.swapaxes(0, 1))


class _Session:
    def __init__(self, bundle: Bundle, graph: Graph, threads: int | None, providers: list[str]) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        self.graph = graph
        self.session = ort.InferenceSession(str(bundle.path(graph.file)), opts, providers=providers)

    def __call__(self, *inputs: np.ndarray) -> list[np.ndarray]:
        return self.session.run(None, dict(zip(self.graph.inputs, inputs, strict=True)))


class OnnxBackend(BundledBackend):
    name = "onnx"
    batched_joint = True

    def __init__(self, bundle: Bundle, lookahead: Lookahead, threads: int | None = None,
                 providers: list[str] | None = None) -> None:
        super().__init__(bundle, lookahead)
        # Dynamically quantized graphs take one activation scale over the whole input (DynamicQuantizeLinear): in
        # a batch a stream's outputs would depend on the other streams (default model int8 encoder: up to 0.07).
        self.batch_exact = (bundle.manifest.get("quantization") or {}).get("method") != "dynamic"
        providers = providers or execution_providers("cpu")
        self._first = _Session(bundle, lookahead.encoder_first, threads, providers)
        self._next = _Session(bundle, lookahead.encoder_next, threads, providers)
        # The heads run one thread: their matrices are too small to split (the joint over 7 frames of the default
        # model: 30 us on one thread, 62 us on two), and the RNNT decoder scores a chunk's frames in one call.
        self._heads = {role: _Session(bundle, g, 1, providers) for role, g in bundle.heads.items()}

    def encode(
        self, chunk: np.ndarray, chunk_len: np.ndarray, state: EncoderState, first: bool
    ) -> tuple[np.ndarray, np.ndarray, EncoderState]:
        session = self._first if first else self._next
        encoded, lengths, channel, time, channel_len = session(
            self.fit_chunk(chunk, session.graph.info["chunk_frames"]),  # (B, F, T)
            np.asarray(chunk_len, dtype=np.int64),  # (B,)
            batch_first(state.cache_last_channel),  # (B, L, C, D)
            batch_first(state.cache_last_time),  # (B, L, D, K-1)
            np.asarray(state.cache_last_channel_len, dtype=np.int64),  # (B,)
        )  # encoded (B, D, T')
        valid = int(lengths.max()) if lengths.size else 0
        next_state = EncoderState(layer_first(channel), layer_first(time), channel_len)
        return encoded[:, :, :valid].transpose(0, 2, 1), lengths, next_state  # (B, T', D)

    def ctc_log_probs(self, encoded: np.ndarray) -> np.ndarray:
        if "ctc" not in self._heads:
            raise ValueError("this bundle has no CTC head")
        (log_probs,) = self._heads["ctc"](np.ascontiguousarray(encoded.transpose(0, 2, 1)))  # (B, D, T')
        return log_probs  # (B, T', V+1)

    def predict(self, token: np.ndarray, state: PredictorState) -> tuple[np.ndarray, PredictorState]:
        targets = np.asarray(token, dtype=np.int32)[:, None]  # (B, 1)
        out, _, h, c = self._heads["rnnt_decoder"](targets, np.ones(len(targets), dtype=np.int32), state.h, state.c)
        return out[:, :, 0], PredictorState(h, c)  # (B, H)

    def joint(self, encoded_frame: np.ndarray, prediction: np.ndarray) -> np.ndarray:
        (logits,) = self._heads["rnnt_joint"](
            np.ascontiguousarray(encoded_frame, dtype=np.float32)[:, :, None],  # (B, D, 1)
            np.ascontiguousarray(prediction, dtype=np.float32)[:, :, None],  # (B, H, 1)
        )  # (B, 1, 1, V+1)
        return logits[:, 0, 0]
