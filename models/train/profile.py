"""Where a training step's time goes on this machine: audio seconds per wall second of each phase's step.

    python -m ouvir.models.train.profile [--threads 1 2] [--batch-seconds 90] [--rounds 4] [--out profile.json]

Times, on a batch of the shipped model's shape (random log-mel, BPE 256 targets at a read-speech rate), the
encoder forward alone, a CTC-only step (``--ctc-weight 1``), a frozen-encoder RNNT-head step
(``--freeze-encoder``) and a hybrid RNNT+CTC step, each with its backward pass and AdamW update, and the data
path per utterance (log-mel, on-the-fly augmentation). Each kind is timed in interleaved rounds (the median
kept), so a busy machine slows them alike and their ratios hold.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ouvir.engine.features import log_mel
from ouvir.models.asr import ASRModel
from ouvir.models.train.batching import Batch, OnlineAugment
from ouvir.models.train.recipe import small_model_config
from ouvir.models.train.step import forward, hybrid_loss

UTTERANCE_S = 3.3  # the synthetic sets' mean duration
TOKENS_PER_S = 5.0


def _batch(batch_seconds: float, gen: torch.Generator) -> Batch:
    size = max(int(batch_seconds // UTTERANCE_S), 1)
    frames, labels = int(UTTERANCE_S * 100), int(UTTERANCE_S * TOKENS_PER_S)
    return Batch(torch.randn(size, 80, frames, generator=gen) - 5.0, torch.full((size,), frames),
                 torch.randint(0, 256, (size, labels), generator=gen), torch.full((size,), labels), [""] * size)


def _steps(model: ASRModel, batch: Batch) -> dict[str, Callable[[], None]]:
    blank, context = model.config.blank_id, (70, 6)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)

    def step(rnnt: bool, train_encoder: bool, ctc_weight: float) -> Callable[[], None]:
        def run() -> None:
            model.encoder.train(train_encoder)
            losses = hybrid_loss(forward(model, batch, context, rnnt, train_encoder), batch, blank, ctc_weight)
            optimizer.zero_grad(set_to_none=True)
            losses.total.backward()
            optimizer.step()
        return run

    def encoder_forward() -> None:
        with torch.no_grad():
            model.encoder(batch.features, batch.lengths, context)

    return {"encoder forward": encoder_forward, "ctc-only step": step(False, True, 1.0),
            "rnnt-head step (frozen encoder)": step(True, False, 0.3), "hybrid step": step(True, True, 0.3)}


def _median_seconds(fns: dict[str, Callable[[], None]], rounds: int) -> dict[str, float]:
    for fn in fns.values():
        fn()  # warm-up
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def profile(threads: int, batch_seconds: float, rounds: int, dropout: float) -> dict[str, dict[str, float]]:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = ASRModel(small_model_config(tuple(f"p{i}" for i in range(256)), dropout=dropout))
    model.train()
    batch = _batch(batch_seconds, torch.Generator().manual_seed(0))
    audio_s = float(batch.lengths.sum()) / 100
    step_s = _median_seconds(_steps(model, batch), rounds)
    rng = np.random.default_rng(0)
    wave = (0.05 * rng.standard_normal(int(UTTERANCE_S * 16000))).astype(np.float32)
    augment = OnlineAugment(p_speed=1.0, p_noise=1.0, p_reverb=1.0)  # every transform, the dearest case
    data_s = _median_seconds({"log-mel": lambda: log_mel(wave, model.config.features),
                              "online augment (all transforms)": lambda: augment(wave, rng)}, 5 * rounds)
    return {**{k: {"ms": round(1000 * s, 1), "audio_s_per_s": round(audio_s / s, 1)} for k, s in step_s.items()},
            **{k: {"ms": round(1000 * s, 2), "audio_s_per_s": round(UTTERANCE_S / s, 1)} for k, s in data_s.items()}}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m ouvir.models.train.profile", description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--batch-seconds", type=float, default=90.0)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--out", type=Path, help="also write the numbers as JSON")
    a = p.parse_args(argv)
    report = {}
    for threads in a.threads:
        report[f"{threads} threads"] = rows = profile(threads, a.batch_seconds, a.rounds, a.dropout)
        for name, row in rows.items():
            print(f"{threads} thread(s)  {name:34s} {row['ms']:9.1f} ms  {row['audio_s_per_s']:8.1f} audio-s/s")
    if a.out:
        a.out.write_text(json.dumps({"batch_seconds": a.batch_seconds, "dropout": a.dropout, **report}, indent=2))


if __name__ == "__main__":
    main()
