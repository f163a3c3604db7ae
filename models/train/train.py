"""Train ouvir's small streaming hybrid RNNT+CTC FastConformer; pack a dataset's audio for training.

    python -m ouvir.models.train.train --data /work/data/synth_v1 --out runs/small --max-minutes 600
    python -m ouvir.models.train.train --data /work/data/synth_v1 --out runs/small --resume
    python -m ouvir.models.train.train pack --data /work/data/synth_v1 [more ...] --out /work/data/synth_v1_packed

``--data`` holds ``train`` and ``test`` splits, as manifests (``train.jsonl``) or packs (``train.pack/``,
made by ``pack``; they need neither soundfile nor the WAVs). The output folder gets ``tokenizer.model``
(BPE trained on the training texts at the first start), ``log.jsonl`` (one JSON object per line: ``kind``
"start", "train", "val" or "stop"), ``curve.png``, ``last.pt`` (everything needed to resume: weights,
optimizer, schedule, data position; written every ``--save-every`` steps and on stopping) and the best
``--keep-best`` models by validation RNNT WER as ouvir checkpoints (``best-stepNNNNNNN.ouvir``), plus
``final.ouvir`` when the run stops. Each step's randomness (look-ahead draw, SpecAugment, dropout, waveform
augmentation) is a function of (seed, step), so a resumed run continues exactly where it stopped.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from ouvir.engine.features import hann_window, mel_filterbank
from ouvir.models.asr import ASRModel, LoadedModel
from ouvir.models.checkpoint import load_checkpoint, save_checkpoint
from ouvir.models.config import ModelConfig
from ouvir.models.tokenizer import Tokenizer
from ouvir.models.train.batching import (
    OnlineAugment,
    SpeechDataset,
    TrainBatches,
    bucket_batches,
    collate,
    pack_split,
    read_split,
)
from ouvir.models.train.recipe import Recipe, noam_factor, small_model_config
from ouvir.models.train.specaug import SpecAugmentConfig, spec_augment
from ouvir.models.train.step import evaluate, forward, hybrid_loss
from ouvir.models.train.tokenizer_train import train_tokenizer

STATE = "last.pt"


@dataclass(frozen=True)
class RunOptions:
    """How this invocation runs (may change between resumes)."""

    data: Path
    out: Path
    device: str = "cpu"
    workers: int = 1
    threads: int = 1  # on a shared 2-core machine 2 threads ran ~10x slower than 1 (spin-waiting)
    max_minutes: float = 0.0  # 0: no time budget
    max_steps: int = 0  # 0: no step limit
    log_every: int = 10
    val_every: int = 500
    save_every: int = 500
    keep_best: int = 3
    val_utterances: int = 200


@dataclass
class Progress:
    """Where the run is: saved in ``last.pt``."""

    step: int = 0  # optimizer steps done
    epoch: int = 0
    batch_in_epoch: int = 0  # position in the epoch of the next batch
    train_seconds: float = 0.0  # wall time of the whole run, all invocations, as of the last save
    validated_step: int = -1  # step of the last validation
    best: list[list[float]] | None = None  # [val RNNT WER, step] of the kept best checkpoints, best first


def sample_context(cfg: ModelConfig, rng: random.Random) -> tuple[int, int]:
    """A look-ahead for this batch: ``att_context_probs`` if given, else uniform (as NeMo)."""
    contexts = list(cfg.encoder.att_context_size)
    weights = cfg.encoder.att_context_probs
    return rng.choices(contexts, weights=list(weights) if weights else None)[0]


def _write_json_line(path: Path, record: dict[str, Any]) -> None:
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def _save_state(out: Path, model: ASRModel, optimizer: torch.optim.Optimizer,
                scheduler: torch.optim.lr_scheduler.LRScheduler, recipe: Recipe, progress: Progress,
                tokenizer_model: bytes) -> None:
    state = {
        "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
        "config": model.config.to_dict(), "recipe": asdict(recipe), "progress": asdict(progress),
        "tokenizer": tokenizer_model,
    }  # fmt: skip
    tmp = out / (STATE + ".tmp")
    torch.save(state, tmp)
    tmp.replace(out / STATE)


def _save_model(path: Path, model: ASRModel, tokenizer_model: bytes) -> None:
    features = model.config.features
    save_checkpoint(path, LoadedModel(model, model.config, tokenizer_model, hann_window(features),
                                      mel_filterbank(features)))


def _keep_best(out: Path, progress: Progress, wer: float, model: ASRModel, tokenizer_model: bytes,
               keep: int) -> None:
    best = sorted([*((w, int(s)) for w, s in progress.best or []), (wer, progress.step)])
    if (wer, progress.step) in best[:keep]:
        _save_model(out / f"best-step{progress.step:07d}.ouvir", model, tokenizer_model)
    for _, step in best[keep:]:
        (out / f"best-step{step:07d}.ouvir").unlink(missing_ok=True)
    progress.best = [list(b) for b in best[:keep]]


def _loader(dataset: SpeechDataset, batch_sampler: Any, workers: int, device: torch.device
            ) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(dataset, batch_sampler=batch_sampler, collate_fn=collate,
                                       num_workers=workers, pin_memory=device.type == "cuda",
                                       prefetch_factor=4 if workers else None)


def _one_blas_thread() -> None:
    """numpy's BLAS (the log-mel filterbank product) on one thread per process, inherited by the data
    workers: a multi-threaded BLAS in each of N workers oversubscribes the cores."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(1, user_api="blas")


def _train_mode(model: ASRModel, recipe: Recipe) -> None:
    model.train()
    if recipe.freeze_encoder:
        model.encoder.eval()  # no dropout in a frozen encoder


def train(recipe: Recipe, opts: RunOptions, resume: bool = False) -> Progress:
    from tqdm import tqdm

    torch.set_num_threads(opts.threads)
    _one_blas_thread()
    # SIGTERM stops like Ctrl-C (validate, save, final checkpoint); a background job started by a non-interactive
    # shell ignores SIGINT, so `kill PID` is how such a run is stopped cleanly.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    device = torch.device(opts.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # TF32 matmuls: ~fp32 accuracy at tensor-core speed
        torch.backends.cudnn.allow_tf32 = True
    out = opts.out
    out.mkdir(parents=True, exist_ok=True)
    log = out / "log.jsonl"
    state = None
    if resume and (out / STATE).is_file():
        state = torch.load(out / STATE, map_location="cpu", weights_only=True)
        stored = Recipe.from_dict(state["recipe"])
        ignored = {k: v for k, v in asdict(recipe).items() if v != getattr(stored, k)}
        if ignored:
            print(f"resuming with the checkpoint's recipe; ignoring {ignored}", file=sys.stderr)
        recipe = stored
    elif (out / STATE).is_file():
        raise FileExistsError(f"{out / STATE} exists: pass --resume to continue it or choose another --out")
    elif resume:
        print(f"no {out / STATE} yet: starting a new run", file=sys.stderr)

    train_utts = [u for u in read_split(opts.data, "train") if u.duration <= recipe.max_duration]
    if not train_utts:
        raise ValueError(f"{opts.data}: no training utterance of at most {recipe.max_duration} s")
    val_utts = read_split(opts.data, "test")[: opts.val_utterances]
    start = load_checkpoint(recipe.init_from) if state is None and recipe.init_from else None
    if state is not None:
        tokenizer_model = state["tokenizer"]
    elif start is not None:
        tokenizer_model = start.tokenizer_model
    else:
        tokenizer_model = train_tokenizer((u.text for u in train_utts), recipe.vocab_size, recipe.seed)
    (out / "tokenizer.model").write_bytes(tokenizer_model)
    tokenizer = Tokenizer(tokenizer_model)
    cfg = ModelConfig.from_dict(state["config"]) if state else small_model_config(
        tokenizer.pieces, recipe.d_model, recipe.n_layers, recipe.freq_masks, recipe.time_masks, recipe.dropout)

    torch.manual_seed(recipe.seed)
    model = ASRModel(cfg).to(device)
    if start is not None:  # weights of an earlier run (its architecture must match the recipe's)
        model.load_state_dict(start.model.state_dict())
        del start
    if recipe.freeze_encoder:
        model.encoder.requires_grad_(False)
        model.ctc.requires_grad_(False)
    trained = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trained, lr=recipe.peak_lr, betas=recipe.betas, weight_decay=recipe.weight_decay,
                                  fused=True)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: noam_factor(i + 1, recipe))
    progress = Progress()
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        progress = Progress(**state["progress"])
    del state
    specaug = SpecAugmentConfig.from_dict(cfg.spec_augment)
    train_rnnt = recipe.ctc_weight < 1.0
    online = OnlineAugment(p_shift=recipe.online_shift, p_telephone=recipe.online_telephone)
    train_set = SpeechDataset(train_utts, cfg.features, tokenizer_model, online if recipe.augment else None,
                              dither=True)
    val_set = SpeechDataset(val_utts, cfg.features, tokenizer_model)
    val_batches = [[(i, 0) for i in b] for b in bucket_batches([u.duration for u in val_utts],
                                                                 2 * recipe.batch_seconds, 0, shuffle=False)]
    durations = [u.duration for u in train_utts]
    params = sum(p.numel() for p in model.parameters())
    _write_json_line(log, {"kind": "start", "step": progress.step, "params": params, "device": str(device),
                           "train_utterances": len(train_utts), "val_utterances": len(val_utts),
                           "train_hours": round(sum(durations) / 3600, 3), "recipe": asdict(recipe),
                           "options": {k: str(v) for k, v in asdict(opts).items()}})

    def validate() -> None:
        bar = tqdm(_loader(val_set, val_batches, opts.workers, device), desc="validating", leave=False,
                   unit="batch", dynamic_ncols=True)
        ev = evaluate(model, bar, tokenizer, device, recipe.ctc_weight)
        _train_mode(model, recipe)
        _write_json_line(log, {"kind": "val", "step": progress.step, "wer_rnnt": round(ev.wer_rnnt, 5),
                               "wer_ctc": round(ev.wer_ctc, 5), "loss": round(ev.loss, 4),
                               "utterances": ev.utterances, "examples": ev.examples})
        tqdm.write(f"step {progress.step}: val WER rnnt {ev.wer_rnnt:.3f} ctc {ev.wer_ctc:.3f} loss {ev.loss:.3f}")
        for ref, hyp, _ in ev.examples:
            tqdm.write(f"  ref: {ref!r}\n  hyp: {hyp!r}")
        progress.validated_step = progress.step
        _keep_best(out, progress, ev.wer_rnnt if train_rnnt else ev.wer_ctc, model, tokenizer_model, opts.keep_best)

    def save() -> None:
        progress.train_seconds = earlier_seconds + time.monotonic() - started
        _save_state(out, model, optimizer, scheduler, recipe, progress, tokenizer_model)

    started, earlier_seconds = time.monotonic(), progress.train_seconds
    window: dict[str, float] = {"loss": 0.0, "rnnt": 0.0, "ctc": 0.0, "grad_norm": 0.0, "audio_s": 0.0, "n": 0}
    window_start = time.monotonic()
    hop_s = cfg.features.hop_length / cfg.features.sample_rate
    reason: str | None = None
    _train_mode(model, recipe)
    bar = tqdm(total=opts.max_steps or None, initial=progress.step, desc="training", unit="step",
               dynamic_ncols=True)
    sampler = TrainBatches(durations, recipe.batch_seconds, recipe.seed, progress.epoch, progress.batch_in_epoch)
    batches = zip(_loader(train_set, sampler, opts.workers, device), sampler.positions(), strict=True)  # endless
    try:
        for batch, (epoch, position) in batches:
            if opts.max_steps and progress.step >= opts.max_steps:
                reason = "max_steps"
            elif opts.max_minutes and time.monotonic() - started >= opts.max_minutes * 60:
                reason = "max_minutes"
            if reason is not None:
                break
            torch.manual_seed(recipe.seed * 1_000_003 + progress.step)
            context = sample_context(cfg, random.Random(recipe.seed * 1_000_003 + progress.step))
            batch = batch.to(device)
            if specaug.active:
                batch = batch._replace(features=spec_augment(batch.features, batch.lengths, specaug))
            outputs = forward(model, batch, context, train_rnnt, not recipe.freeze_encoder)
            losses = hybrid_loss(outputs, batch, cfg.blank_id, recipe.ctc_weight,
                                 recipe.fastemit_lambda)
            optimizer.zero_grad(set_to_none=True)
            losses.total.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
            optimizer.step()
            scheduler.step()
            progress.step += 1
            progress.epoch, progress.batch_in_epoch = epoch, position + 1
            bar.update(1)
            for key, value in (("loss", losses.total), ("rnnt", losses.rnnt), ("ctc", losses.ctc),
                               ("grad_norm", grad_norm)):
                window[key] += float(value.detach())
            window["audio_s"] += float(batch.lengths.sum()) * hop_s
            window["n"] += 1
            if progress.step % opts.log_every == 0:
                n, dt = window["n"], time.monotonic() - window_start
                record = {"kind": "train", "step": progress.step, "epoch": progress.epoch,
                          **{k: round(window[k] / n, 4) for k in ("loss", "rnnt", "ctc", "grad_norm")},
                          "lr": scheduler.get_last_lr()[0], "context": list(context),
                          "steps_per_s": round(n / dt, 4), "audio_s_per_s": round(window["audio_s"] / dt, 2),
                          "elapsed_s": round(earlier_seconds + time.monotonic() - started, 1)}
                _write_json_line(log, record)
                bar.set_postfix(loss=record["loss"], lr=f"{record['lr']:.2e}", aps=record["audio_s_per_s"])
                window = dict.fromkeys(window, 0.0)
                window_start = time.monotonic()
            if progress.step % opts.val_every == 0:
                validate()
            if progress.step % opts.save_every == 0:
                save()
    except KeyboardInterrupt:
        reason = "interrupted"
    bar.close()
    if reason != "interrupted" and progress.validated_step != progress.step:
        validate()
    save()
    _save_model(out / "final.ouvir", model, tokenizer_model)
    _write_json_line(log, {"kind": "stop", "step": progress.step, "reason": reason,
                           "elapsed_s": round(progress.train_seconds, 3)})
    from ouvir.models.train.plot import plot_log

    plot_log(log, out / "curve.png")
    return progress


def pack(data: list[Path], out: Path, shard_mb: float) -> None:
    """Each split of every data folder, in order, into one pack per split (datasets of several recipes or seeds)."""
    for split in ("train", "test"):
        stats = pack_split([u for d in data for u in read_split(d, split)], out / f"{split}.pack", shard_mb)
        print(f"{split}: {json.dumps(stats)}")


def _pack_main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="python -m ouvir.models.train.train pack",
                                description="Pack a dataset's train/test audio into int16 .npy shards.")
    p.add_argument("--data", type=Path, nargs="+", required=True,
                   help="folders with train.jsonl and test.jsonl; several are packed together")
    p.add_argument("--out", type=Path, required=True, help="gets train.pack/ and test.pack/")
    p.add_argument("--shard-mb", type=float, default=200.0, help="approximate shard size")
    args = p.parse_args(argv)
    pack(args.data, args.out, args.shard_mb)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["pack"]:
        _pack_main(argv[1:])
        return
    defaults = Recipe()
    p = argparse.ArgumentParser(prog="python -m ouvir.models.train.train", description=__doc__.split("\n")[0],
                                epilog="Subcommand: 'pack --data DIR --out DIR' writes int16 shards.")
    p.add_argument("--data", type=Path, required=True, help="folder with train/test manifests or packs")
    p.add_argument("--out", type=Path, required=True, help="run folder (logs, checkpoints)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out (its recipe wins)")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    p.add_argument("--max-minutes", type=float, default=0.0, help="stop and save after this wall time")
    p.add_argument("--max-steps", type=int, default=0, help="stop at this optimizer step")
    p.add_argument("--batch-seconds", type=float, default=defaults.batch_seconds, help="padded audio per batch")
    p.add_argument("--workers", type=int, default=1, help="data loader processes")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: best on a busy 2-core box)")
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument("--peak-lr", type=float, default=defaults.peak_lr)
    p.add_argument("--warmup-steps", type=int, default=defaults.warmup_steps)
    p.add_argument("--vocab-size", type=int, default=defaults.vocab_size)
    p.add_argument("--layers", type=int, default=defaults.n_layers)
    p.add_argument("--d-model", type=int, default=defaults.d_model)
    p.add_argument("--ctc-weight", type=float, default=defaults.ctc_weight,
                   help="loss = (1 - w) RNNT + w CTC; 1.0 trains the encoder and CTC head alone (fastest)")
    p.add_argument("--freeze-encoder", action="store_true",
                   help="train the prediction net and joint only, over the --init-from encoder")
    p.add_argument("--dropout", type=float, default=defaults.dropout, help="encoder dropout")
    p.add_argument("--no-augment", action="store_true", help="no on-the-fly waveform augmentation")
    p.add_argument("--online-shift", type=float, default=defaults.online_shift,
                   help="share of training utterances given an on-the-fly voice shift (sox pitch)")
    p.add_argument("--online-telephone", type=float, default=defaults.online_telephone,
                   help="share of training utterances sent through a telephone channel (300-3400 Hz, mu-law)")
    p.add_argument("--init-from", default="", help="start from this ouvir checkpoint's weights and tokenizer")
    p.add_argument("--freq-masks", type=int, default=defaults.freq_masks, help="SpecAugment frequency masks")
    p.add_argument("--time-masks", type=int, default=defaults.time_masks, help="SpecAugment time masks")
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--val-every", type=int, default=500)
    p.add_argument("--save-every", type=int, default=500)
    p.add_argument("--keep-best", type=int, default=3)
    p.add_argument("--val-utterances", type=int, default=200)
    a = p.parse_args(argv)
    recipe = Recipe(vocab_size=a.vocab_size, d_model=a.d_model, n_layers=a.layers, batch_seconds=a.batch_seconds,
                    peak_lr=a.peak_lr, warmup_steps=a.warmup_steps, augment=not a.no_augment, seed=a.seed,
                    freq_masks=a.freq_masks, time_masks=a.time_masks, init_from=a.init_from,
                    ctc_weight=a.ctc_weight, dropout=a.dropout, freeze_encoder=a.freeze_encoder,
                    online_shift=a.online_shift, online_telephone=a.online_telephone)
    opts = RunOptions(data=a.data, out=a.out, device=a.device, workers=a.workers, threads=a.threads,
                      max_minutes=a.max_minutes, max_steps=a.max_steps, log_every=a.log_every,
                      val_every=a.val_every, save_every=a.save_every, keep_best=a.keep_best,
                      val_utterances=a.val_utterances)
    progress = train(recipe, opts, resume=a.resume)
    print(json.dumps({"step": progress.step, "best": progress.best, "out": str(opts.out)}))


if __name__ == "__main__":
    main()
