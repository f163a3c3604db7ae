"""Everything a NeMo reference ``.npz`` holds, recomputed by ouvir under the same key names (README §5).

Offline per look-ahead (``offline.{ctx}.*``), default-mode streaming (``stream.{ctx}.*``) and
pad_and_drop streaming (``stream_pad.{ctx}.*``, only when the reference has it), with CTC / RNNT greedy
decoding carried across steps. B = 1.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from ouvir.engine.features import log_mel
from ouvir.models.asr import LoadedModel
from ouvir.models.decoding import ctc_greedy, ctc_initial_state, rnnt_greedy, rnnt_initial_state
from ouvir.models.streaming import stream_encoder

_CTX = re.compile(r"^(?:offline|stream|stream_pad|streaming_cfg)\.c(\d+)_(\d+)\.")
_GEOMETRY = ("chunk_size", "shift_size", "pre_encode_cache_size", "drop_extra_pre_encoded", "valid_out_len",
             "last_channel_cache_size", "cache_drop_size")


def _np(x: torch.Tensor | list[int] | int) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.int64)


def read_audio(path: str | Path, sample_rate: int) -> np.ndarray:
    """A mono file at the model's rate -> (N,) float32 (int16 / 32768, as NeMo reads it); no resampling."""
    samples, rate = sf.read(str(path), dtype="float32", always_2d=True)  # (N, C)
    if rate != sample_rate or samples.shape[1] != 1:
        raise ValueError(f"{path}: {rate} Hz, {samples.shape[1]} channel(s); parity needs {sample_rate} Hz mono")
    return samples[:, 0]


class _Decoders:
    """Greedy CTC / RNNT over successive chunks of encoder output, storing NeMo's keys under ``prefix``."""

    def __init__(self, loaded: LoadedModel, out: dict[str, np.ndarray], prefix: str):
        m = loaded.model
        self.model, self.out, self.prefix, self.blank = m, out, prefix, loaded.config.blank_id
        self.ctc_state = ctc_initial_state(1, self.blank)
        self.rnnt_state = rnnt_initial_state(m.predictor, m.joint, 1) if m.predictor is not None else None
        self.argmax: list[int] = []
        self.ctc_tokens: list[int] = []
        self.rnnt_tokens: list[int] = []
        self.rnnt_times: list[int] = []
        self.rnnt_counts: list[int] = []

    def __call__(self, encoded: torch.Tensor, lengths: torch.Tensor, step: str = "") -> None:
        m, out = self.model, self.out
        if m.ctc is not None:
            log_probs = m.ctc(encoded)[:, : int(lengths[0])]  # (1, t, V+1)
            self.argmax += log_probs[0].argmax(-1).tolist()
            hyp, self.ctc_state = ctc_greedy(log_probs, lengths, self.ctc_state)
            self.ctc_tokens += hyp.tokens[0]
            out[f"{self.prefix}{step}ctc_log_probs"] = _np(log_probs)
        if m.predictor is not None:
            hyp, self.rnnt_state = rnnt_greedy(m.predictor, m.joint, encoded, lengths, self.rnnt_state,
                                               m.config.rnnt.max_symbols)
            self.rnnt_tokens += hyp.tokens[0]
            self.rnnt_times += hyp.timestamps[0]
            self.rnnt_counts.append(len(self.rnnt_tokens))
            if step:
                self._rnnt_state(f"{self.prefix}{step}rnnt_state.")
                out[f"{self.prefix}{step}rnnt_token_ids_cum"] = _np(self.rnnt_tokens)

    def _rnnt_state(self, prefix: str) -> None:
        h, c, g, label, length = self.rnnt_state
        for name, value in (("pred_state_0", h[:, 0]), ("pred_state_1", c[:, 0]), ("pred_output", g),
                            ("label", label[0]), ("decoded_length", length[0])):
            self.out[prefix + name] = _np(value)

    def finish(self, argmax_key: str) -> None:
        p, out = self.prefix, self.out
        if self.model.ctc is not None:
            out[p + argmax_key] = _np(self.argmax)
            out[p + "ctc_token_ids"] = _np(self.ctc_tokens)
        if self.model.predictor is not None:
            out[p + "rnnt_token_ids"] = _np(self.rnnt_tokens)
            out[p + "rnnt_timestamps"] = _np(self.rnnt_times)
            out[p + "rnnt_num_tokens_per_step"] = _np(self.rnnt_counts)
            self._rnnt_state(p + "rnnt_final_state.")


def _offline(loaded: LoadedModel, feats: torch.Tensor, valid: int, ctx: tuple[int, int], out: dict) -> None:
    c, enc = f"c{ctx[0]}_{ctx[1]}", loaded.model.encoder
    for suffix, length in (("", valid), ("_fulllen", feats.shape[-1])):
        encoded, encoded_len = enc(feats, torch.tensor([length]), context=ctx)  # (1, D, T')
        out[f"offline.{c}.encoded{suffix}"], out[f"offline.{c}.encoded{suffix}_len"] = _np(encoded), _np(encoded_len)
        if not suffix:
            dec = _Decoders(loaded, out, f"offline.{c}.")
            dec(encoded, encoded_len)
            dec.finish("ctc_argmax")


def _stream(loaded: LoadedModel, feats: torch.Tensor, ctx: tuple[int, int], mode: str, out: dict) -> None:
    enc, p = loaded.model.encoder, f"{mode}.c{ctx[0]}_{ctx[1]}."
    geo = enc.geometry(ctx, loaded.config.features.window_stride)
    dec = _Decoders(loaded, out, p)
    per_step: dict[str, list] = {k: [] for k in ("chunk_frames", "chunk_len", "encoded_len", "buffer_idx_after",
                                                 "drop_extra_pre_encoded", "cache_last_channel_len_out")}
    encoded_all, last = [], None
    steps = stream_encoder(enc, feats, torch.tensor([feats.shape[-1]]), geo, enc.state_spec(ctx).initial(1),
                           pad_and_drop=mode == "stream_pad")
    for k, s in enumerate(steps):
        sp = f"step{k:03d}."
        out[p + sp + "chunk"], out[p + sp + "chunk_len"] = _np(s.features), _np(s.features_len)
        for name, value in s.state_in._asdict().items():
            out[f"{p}{sp}{name}_in"] = _np(value)
        for name, value in s.state_out._asdict().items():
            out[f"{p}{sp}{name}_out"] = _np(value)
        out[p + sp + "encoded"], out[p + sp + "encoded_len"] = _np(s.encoded), _np(s.encoded_len)
        dec(s.encoded, s.encoded_len, sp)
        encoded_all.append(s.encoded[:, :, : int(s.encoded_len[0])])
        for key, value in (("chunk_frames", s.chunk.width), ("chunk_len", int(s.features_len[0])),
                           ("encoded_len", int(s.encoded_len[0])), ("drop_extra_pre_encoded", s.chunk.drop_extra),
                           ("buffer_idx_after", s.chunk.start + s.chunk.shift),
                           ("cache_last_channel_len_out", int(s.state_out.cache_last_channel_len[0]))):
            per_step[key].append(value)
        last = s.state_out
    for key, values in per_step.items():
        out[f"{p}{key}_per_step"] = _np(values)
    # NeMo's infer script passes keep_all_outputs=streaming_buffer.is_buffer_empty(): the read pointer reached
    # the end. When fewer columns than a step needs are left over, the buffer stops before that: no step has it.
    out[p + "keep_all_outputs_per_step"] = np.array(per_step["buffer_idx_after"]) >= feats.shape[-1]
    out[p + "encoded_concat"] = _np(torch.cat(encoded_all, dim=-1))
    for name, value in last._asdict().items():
        out[f"{p}final.{name}"] = _np(value)
    dec.finish("ctc_argmax_cum")


def produce(loaded: LoadedModel, audio_path: str | Path, keys: set[str]) -> dict[str, np.ndarray]:
    """Every key ouvir can produce for the look-aheads named in ``keys`` (pad_and_drop only when asked)."""
    cfg = loaded.config
    audio = read_audio(audio_path, cfg.features.sample_rate)
    features = log_mel(audio, cfg.features, loaded.window, loaded.fb)  # (F, T)
    valid = len(audio) // cfg.features.hop_length
    out: dict[str, np.ndarray] = {
        "audio.length": _np([len(audio)]), "preproc.features": features[None], "preproc.length": _np([valid]),
        "stream.streams_length": _np([features.shape[-1]]),
    }
    feats = torch.from_numpy(features)[None]  # (1, F, T)
    contexts = sorted({(int(m.group(1)), int(m.group(2))) for k in keys if (m := _CTX.match(k))})
    with torch.no_grad():
        for ctx in (c for c in contexts if c in cfg.encoder.att_context_size):
            geo = loaded.model.encoder.geometry(ctx, cfg.features.window_stride)
            for name in _GEOMETRY:
                out[f"streaming_cfg.c{ctx[0]}_{ctx[1]}.{name}"] = _np(getattr(geo, name))
            _offline(loaded, feats, valid, ctx, out)
            _stream(loaded, feats, ctx, "stream", out)
            if any(k.startswith(f"stream_pad.c{ctx[0]}_{ctx[1]}.") for k in keys):
                _stream(loaded, feats, ctx, "stream_pad", out)
    return out
