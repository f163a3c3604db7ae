"""The ExecuTorch backend: runs the methods of a bundle's ``model.pte`` (export/pte_export.py).

Method signatures are the ONNX graphs' (batch-first caches, NeMo's tensor order), with every shape fixed
and batch 1: a batch is run stream by stream, a shorter last chunk is zero-padded to the method's width
(``length`` keeps its real width) and the CTC head's frames are zero-padded to its fixed count. The joint
takes a fixed number of rows (a step's frames), zero-padded.

ExecuTorch 1.5.1's Python runtime is built on torch's libraries, so this backend imports torch (lazily,
when a bundle is opened); the engine itself never does. torch only carries tensors here, and its idle
intra-op workers spin on the cores XNNPACK computes on, so opening this backend sets torch to one thread
(hybrid fixture step: 1.7 -> 1.2 ms); ``threads`` sizes ExecuTorch's own pool.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ouvir.engine.backends.base import EncoderState, PredictorState
from ouvir.engine.backends.bundled import BundledBackend, load_for
from ouvir.engine.bundle import Bundle, BundleError, Graph, Lookahead


def open(path: Path, precision: str | None, lookahead_ms: int | None, threads: int | None = None,
         device: str = "cpu") -> PteBackend:
    del device  # always "cpu": open_backend refuses the others (CPU_ONLY)
    bundle = load_for(path, "pte", precision)
    return PteBackend(bundle, bundle.select(lookahead_ms), threads)


class _Method:
    def __init__(self, program: Any, graph: Graph) -> None:
        import torch

        self._torch = torch
        self.graph = graph
        self.method = program.load_method(graph.method)

    def __call__(self, *inputs: np.ndarray) -> list[np.ndarray]:
        outputs = self.method.execute([self._torch.from_numpy(np.ascontiguousarray(x)) for x in inputs])
        return [y.numpy() for y in outputs]


class PteBackend(BundledBackend):
    name = "pte"
    batch_exact = True  # the encoder runs row by row; XNNPACK quantizes the heads' activations per row

    def __init__(self, bundle: Bundle, lookahead: Lookahead, threads: int | None = None) -> None:
        import torch
        from executorch.extension.pybindings import portable_lib
        from executorch.runtime import Runtime

        torch.set_num_threads(1)
        if threads:
            portable_lib._unsafe_reset_threadpool(threads)
        super().__init__(bundle, lookahead)
        files = {g.file for g in (lookahead.encoder_first, lookahead.encoder_next, *bundle.heads.values())}
        if len(files) != 1:
            raise BundleError(bundle.root, f"expected one .pte program, the graphs name {sorted(files)}")
        program = Runtime.get().load_program(bundle.path(files.pop()))
        self._first = _Method(program, lookahead.encoder_first)
        self._next = _Method(program, lookahead.encoder_next)
        self._heads = {role: _Method(program, g) for role, g in bundle.heads.items()}
        joint = bundle.heads.get("rnnt_joint")
        self._joint_rows = joint.info["inputs"][0]["shape"][0] if joint else 1  # the joint graph's fixed rows
        self.batched_joint = self._joint_rows > 1  # scores a step's frames in one call (older bundles: one row)

    def encode(
        self, chunk: np.ndarray, chunk_len: np.ndarray, state: EncoderState, first: bool
    ) -> tuple[np.ndarray, np.ndarray, EncoderState]:
        method = self._first if first else self._next
        chunk = self.fit_chunk(chunk, method.graph.info["chunk_frames"])  # (B, F, T)
        encoded, lengths, channel, time, channel_len = [], [], [], [], []
        for b in range(chunk.shape[0]):  # (1, ...) slices: the methods have batch 1
            e, n, c1, c2, c3 = method(
                chunk[b : b + 1],  # (1, F, T)
                np.asarray(chunk_len[b : b + 1], dtype=np.int64),  # (1,)
                state.cache_last_channel[:, b : b + 1].swapaxes(0, 1),  # (1, L, C, D)
                state.cache_last_time[:, b : b + 1].swapaxes(0, 1),  # (1, L, D, K-1)
                np.asarray(state.cache_last_channel_len[b : b + 1], dtype=np.int64),  # (1,)
            )
            encoded.append(e)  # (1, D, T')
            lengths.append(n)
            channel.append(c1.swapaxes(0, 1))  # (L, 1, C, D)
            time.append(c2.swapaxes(0, 1))  # (L, 1, D, K-1)
            channel_len.append(c3)
        lengths_all = np.concatenate(lengths)
        valid = int(lengths_all.max())
        next_state = EncoderState(_cat(channel, 1), _cat(time, 1), np.concatenate(channel_len))
        return _cat(encoded, 0)[:, :, :valid].transpose(0, 2, 1), lengths_all, next_state  # (B, T', D)

    def ctc_log_probs(self, encoded: np.ndarray) -> np.ndarray:
        if "ctc" not in self._heads:
            raise ValueError("this bundle has no CTC head")
        head = self._heads["ctc"]
        frames = head.graph.info["frames"]
        rows = []
        for b in range(encoded.shape[0]):
            pieces = [np.zeros((1, 0, len(self.info.vocabulary) + 1), np.float32)]
            for t in range(0, encoded.shape[1], frames):  # (frames, D) pieces, the last one zero-padded
                piece = encoded[b : b + 1, t : t + frames].transpose(0, 2, 1).astype(np.float32)  # (1, D, n)
                n = piece.shape[2]
                (log_probs,) = head(np.pad(piece, ((0, 0), (0, 0), (0, frames - n))))  # (1, frames, V+1)
                pieces.append(log_probs[:, :n])
            rows.append(np.concatenate(pieces, axis=1))
        return np.concatenate(rows)  # (B, T', V+1)

    def predict(self, token: np.ndarray, state: PredictorState) -> tuple[np.ndarray, PredictorState]:
        outs, hs, cs = [], [], []
        for b in range(len(token)):
            out, _, h, c = self._heads["rnnt_decoder"](
                np.asarray(token[b : b + 1], dtype=np.int32)[:, None],  # (1, 1)
                np.ones(1, dtype=np.int32),
                state.h[:, b : b + 1],  # (P, 1, H)
                state.c[:, b : b + 1],
            )  # out (1, H, 1)
            outs.append(out[:, :, 0])
            hs.append(h)
            cs.append(c)
        return np.concatenate(outs), PredictorState(np.concatenate(hs, axis=1), np.concatenate(cs, axis=1))

    def joint(self, encoded_frame: np.ndarray, prediction: np.ndarray) -> np.ndarray:
        """Rows in pieces of the graph's fixed row count, the last one zero-padded (rows are independent)."""
        rows, logits = self._joint_rows, []
        for i in range(0, len(encoded_frame), rows):
            enc, pred = encoded_frame[i : i + rows], prediction[i : i + rows]
            pad = ((0, rows - len(enc)), (0, 0))
            (out,) = self._heads["rnnt_joint"](
                np.pad(enc, pad).astype(np.float32)[:, :, None],  # (rows, D, 1)
                np.pad(pred, pad).astype(np.float32)[:, :, None],  # (rows, H, 1)
            )  # (rows, 1, 1, V+1)
            logits.append(out[: len(enc), 0, 0])
        return np.concatenate(logits)


def _cat(parts: list[np.ndarray], axis: int) -> np.ndarray:
    """The streams' outputs side by side; one stream's as they are (the caches are megabytes)."""
    return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=axis)
