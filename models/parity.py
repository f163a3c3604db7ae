"""NeMo parity check: ``python -m ouvir.models.parity MODEL.nemo REFERENCE.npz --audio AUDIO.wav``.

Recomputes every tensor of a NeMo reference ``.npz`` (tests/fixtures/nemo/README.md §5) with ouvir:
numpy log-mel features from the audio, the offline encoder per look-ahead, default-mode and
pad_and_drop streaming step by step, CTC / RNNT greedy decoding with their carried state. Look-aheads,
steps and heads are discovered from the file's keys. One line per tensor group (step indices folded into
``step*``) with the max abs difference; exit status 1 when any group exceeds its tolerance, is missing, or
is unknown (a key ouvir cannot produce).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ouvir.models.archive import ArchiveError
from ouvir.models.asr import CheckpointError, LoadedModel
from ouvir.models.config import UnsupportedConfig
from ouvir.models.nemo import load_nemo
from ouvir.models.parity_run import produce

TOL_FEATURES, TOL_ENCODER, TOL_LOG_PROBS = 1e-3, 1e-4, 1e-3
_CTX = re.compile(r"^(?:offline|stream|stream_pad|streaming_cfg)\.(c\d+_\d+)\.")
_STEP = re.compile(r"step\d{3}")
_CTC = ("offline.{c}.ctc_log_probs", "offline.{c}.ctc_argmax", "offline.{c}.ctc_token_ids",
        "stream.{c}.ctc_argmax_cum", "stream.{c}.ctc_token_ids")
_RNNT_STATE = tuple(f"rnnt_final_state.{f}" for f in
                    ("pred_state_0", "pred_state_1", "pred_output", "label", "decoded_length"))
_RNNT = ("offline.{c}.rnnt_token_ids", "offline.{c}.rnnt_timestamps", "stream.{c}.rnnt_token_ids",
         "stream.{c}.rnnt_timestamps", "stream.{c}.rnnt_num_tokens_per_step",
         *(f"{m}.{{c}}.{s}" for m in ("offline", "stream") for s in _RNNT_STATE))
_PER_CTX = ("offline.{c}.encoded", "offline.{c}.encoded_len", "stream.{c}.encoded_concat",
            "stream.{c}.encoded_len_per_step", "stream.{c}.final.cache_last_channel",
            "stream.{c}.final.cache_last_time", "stream.{c}.final.cache_last_channel_len",
            *(f"streaming_cfg.{{c}}.{f}" for f in ("chunk_size", "shift_size", "pre_encode_cache_size",
                                                   "drop_extra_pre_encoded", "valid_out_len")))
# Per-step groups stored for every step of a context whose step outputs are stored (the default one).
_EVERY_STEP = ("chunk", "chunk_len", "encoded", "encoded_len", "cache_last_channel_out", "cache_last_time_out",
               "cache_last_channel_len_out", "ctc_log_probs", "rnnt_token_ids_cum",
               *(f"rnnt_state.{f}" for f in ("pred_state_0", "pred_state_1", "pred_output", "label",
                                             "decoded_length")))


@dataclass(frozen=True)
class GroupResult:
    group: str  # key, with step indices folded into "step*"
    status: str  # "ok" | "FAIL" (over tolerance or shape) | "MISSING" | "UNKNOWN"
    max_abs_diff: float  # nan when nothing was compared (or a NaN was produced)
    tolerance: float  # 0.0 = exact (integers, booleans)
    keys: int
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def line(self) -> str:
        diff = "-" if self.status in ("MISSING", "UNKNOWN") else f"{self.max_abs_diff:.3g}"
        tol = "exact" if self.tolerance == 0.0 else f"{self.tolerance:g}"
        note = f"  {self.note}" if self.note else ""
        return f"{self.status:<7} {self.group:<58} max|diff| {diff:<10} tol {tol:<6} keys {self.keys}{note}"


def tolerance(key: str, reference: np.ndarray) -> float:
    if reference.dtype.kind in "biu":
        return 0.0
    if key.startswith("preproc.features") or key.endswith(".chunk"):
        return TOL_FEATURES
    return TOL_LOG_PROBS if key.endswith("ctc_log_probs") else TOL_ENCODER


def required_keys(keys: set[str], produced: Mapping[str, np.ndarray], loaded: LoadedModel) -> set[str]:
    """Keys a reference for this model must hold, given the look-aheads it covers: the per-look-ahead
    groups of each head, and every step of a streaming run whose step outputs it stores."""
    contexts = {m.group(1) for k in keys if (m := _CTX.match(k))}
    need = {"audio.length", "preproc.features", "preproc.length", "stream.streams_length"}
    templates = _PER_CTX + (_CTC if loaded.config.ctc else ()) + (_RNNT if loaded.config.rnnt else ())
    for c in contexts:
        need |= {t.format(c=c) for t in templates}
        for mode in ("stream", "stream_pad"):
            if f"{mode}.{c}.step000.encoded" in keys:
                every = re.compile(rf"{mode}\.{c}\.step\d{{3}}\.({'|'.join(map(re.escape, _EVERY_STEP))})")
                need |= {k for k in produced if every.fullmatch(k)}
    return need


def compare(reference: Mapping[str, np.ndarray], produced: Mapping[str, np.ndarray],
            required: set[str]) -> list[GroupResult]:
    groups: dict[str, list[str]] = {}
    for key in sorted(set(reference) | required):
        groups.setdefault(_STEP.sub("step*", key), []).append(key)
    results = []
    for group, keys in groups.items():
        absent = [k for k in keys if k not in reference]
        unknown = [k for k in keys if k in reference and k not in produced]
        if absent:
            results.append(GroupResult(group, "MISSING", float("nan"), 0.0, len(keys), f"absent: {absent[:3]}"))
            continue
        if unknown:
            results.append(GroupResult(group, "UNKNOWN", float("nan"), 0.0, len(keys), "ouvir cannot produce it"))
            continue
        worst, tol, note = 0.0, tolerance(keys[0], reference[keys[0]]), ""
        for k in keys:
            ref, ours = np.asarray(reference[k]), np.asarray(produced[k])
            if ref.shape != ours.shape:
                worst, note = float("inf"), f"{k}: shape {ours.shape} != reference {ref.shape}"
                break
            if ref.size:
                diff = float(np.max(np.abs(ours.astype(np.float64) - ref.astype(np.float64))))
                worst = diff if np.isnan(diff) or diff > worst else worst  # a NaN stays and fails
        results.append(GroupResult(group, "ok" if worst <= tol else "FAIL", worst, tol, len(keys), note))
    return results


def run_parity(nemo_path: str | Path, npz_path: str | Path, audio_path: str | Path) -> list[GroupResult]:
    """Load the ``.nemo``, recompute everything the reference holds, compare group by group."""
    loaded = load_nemo(nemo_path)
    with np.load(npz_path) as z:
        reference = {k: z[k] for k in z.files}
    produced = produce(loaded, audio_path, set(reference))
    return compare(reference, produced, required_keys(set(reference), produced, loaded))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ouvir.models.parity", description=__doc__.split("\n\n")[1])
    p.add_argument("model", type=Path, help="NeMo .nemo checkpoint")
    p.add_argument("reference", type=Path, help="reference .npz written by NeMo")
    p.add_argument("--audio", type=Path, required=True, help="the reference's input audio (16 kHz mono)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (the references were made with 1)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        results = run_parity(args.model, args.reference, args.audio)
    except (ArchiveError, CheckpointError, UnsupportedConfig, ValueError, OSError) as e:
        print(f"parity: error: {e}", file=sys.stderr)
        return 2
    for r in results:
        print(r.line())
    failed = [r for r in results if not r.ok]
    print(f"parity: {len(results)} groups, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
