"""Training: the hybrid loss drops after an optimizer step, the schedule, and an exact resume."""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path

import pytest
import torch

from ouvir.models.asr import ASRModel
from ouvir.models.checkpoint import load_checkpoint
from ouvir.models.config import ModelConfig
from ouvir.models.train.batching import Batch
from ouvir.models.train.recipe import Recipe, noam_factor, small_model_config
from ouvir.models.train.step import forward, hybrid_loss
from ouvir.models.train.train import RunOptions, sample_context, train

from .test_train_data_path import write_npy_manifest

PIECES = ("<unk>", "▁a", "▁b", "c", "d", "e", "f", "g")


def tiny_config() -> ModelConfig:
    cfg = small_model_config(PIECES, d_model=32, n_layers=1)
    enc = dataclasses.replace(cfg.encoder, dropout=0.0, dropout_pre_encoder=0.0, dropout_att=0.0)
    rnnt = dataclasses.replace(cfg.rnnt, pred_dropout=0.0, joint_dropout=0.0)
    return dataclasses.replace(cfg, encoder=enc, rnnt=rnnt)


def test_small_model_config_is_the_shipped_size_and_round_trips() -> None:
    cfg = small_model_config(tuple(f"p{i}" for i in range(256)))
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.encoder.att_context_size[0] == (70, 6) and cfg.blank_id == 256
    assert sum(p.numel() for p in ASRModel(cfg).parameters()) == 2_360_834


def test_one_optimizer_step_lowers_the_hybrid_loss() -> None:
    torch.manual_seed(0)
    cfg = tiny_config()
    model = ASRModel(cfg)
    gen = torch.Generator().manual_seed(1)
    batch = Batch(torch.randn(3, 80, 161, generator=gen), torch.tensor([160, 120, 90]),
                  torch.randint(0, 8, (3, 5), generator=gen), torch.tensor([5, 3, 2]), ["", "", ""])
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    context = (70, 6)
    before = hybrid_loss(forward(model, batch, context), batch, cfg.blank_id, ctc_weight=0.3)
    assert before.total.item() == pytest.approx(0.7 * before.rnnt.item() + 0.3 * before.ctc.item(), rel=1e-6)
    opt.zero_grad()
    before.total.backward()
    opt.step()
    after = hybrid_loss(forward(model, batch, context), batch, cfg.blank_id, ctc_weight=0.3)
    assert after.total.item() < before.total.item() - 0.05
    assert after.rnnt.item() < before.rnnt.item() and after.ctc.item() < before.ctc.item()


def test_ctc_only_phase_skips_the_joint_and_lowers_the_ctc_loss() -> None:
    torch.manual_seed(0)
    cfg = tiny_config()
    model = ASRModel(cfg)
    gen = torch.Generator().manual_seed(1)
    batch = Batch(torch.randn(2, 80, 161, generator=gen), torch.tensor([160, 100]),
                  torch.randint(0, 8, (2, 4), generator=gen), torch.tensor([4, 2]), ["", ""])
    out = forward(model, batch, (70, 6), rnnt=False)
    assert out.logits is None
    with pytest.raises(ValueError, match=r"ctc_weight 0\.3"):
        hybrid_loss(out, batch, cfg.blank_id, ctc_weight=0.3)
    before = hybrid_loss(out, batch, cfg.blank_id, ctc_weight=1.0)
    full = hybrid_loss(forward(model, batch, (70, 6)), batch, cfg.blank_id, ctc_weight=1.0)
    assert before.rnnt.item() == 0.0 and before.total.item() == pytest.approx(full.ctc.item(), rel=1e-6)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    before.total.backward()
    assert all(p.grad is None for p in model.joint.parameters())  # the joint is not part of this loss
    opt.step()
    after = hybrid_loss(forward(model, batch, (70, 6), rnnt=False), batch, cfg.blank_id, ctc_weight=1.0)
    assert after.total.item() < before.total.item() - 0.05


def test_noam_schedule_warms_up_then_decays() -> None:
    r = Recipe(peak_lr=1e-3, warmup_steps=100, min_lr=1e-5)
    assert noam_factor(1, r) == pytest.approx(0.01)
    assert noam_factor(50, r) == pytest.approx(0.5)
    assert noam_factor(100, r) == pytest.approx(1.0)
    assert noam_factor(400, r) == pytest.approx(0.5)
    assert noam_factor(10**9, r) == pytest.approx(0.01)  # floored at min_lr / peak_lr


def test_sample_context_uses_every_look_ahead() -> None:
    cfg = small_model_config(PIECES)
    rng = random.Random(0)
    draws = [sample_context(cfg, rng) for _ in range(400)]
    assert {d: draws.count(d) for d in set(draws)}.keys() == set(cfg.encoder.att_context_size)
    assert all(60 <= draws.count(c) <= 140 for c in cfg.encoder.att_context_size)
    weighted = dataclasses.replace(cfg, encoder=dataclasses.replace(cfg.encoder, att_context_probs=(1, 0, 0, 0)))
    assert {sample_context(weighted, rng) for _ in range(50)} == {(70, 6)}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("data")
    texts = ["a b c", "b c d e", "c a", "d e f", "e f a b", "f a"]
    write_npy_manifest(folder, "train", texts, [0.6, 0.9, 0.4, 0.7, 1.0, 0.5])
    write_npy_manifest(folder, "test", texts[:2], [0.6, 0.9])
    return folder


def _run(data: Path, out: Path, steps: int, resume: bool = False, init_from: str = "", seed: int = 0,
         **recipe_fields: object) -> None:
    recipe = Recipe(vocab_size=24, d_model=32, n_layers=1, batch_seconds=2.0, warmup_steps=2, augment=True,
                    init_from=init_from, seed=seed, **recipe_fields)
    opts = RunOptions(data=data, out=out, workers=0, threads=1, max_steps=steps, log_every=1, val_every=3,
                      save_every=100)
    train(recipe, opts, resume=resume)


def test_resume_continues_exactly(data_dir: Path, tmp_path: Path) -> None:
    _run(data_dir, tmp_path / "straight", 4)
    _run(data_dir, tmp_path / "split", 2)
    with pytest.raises(FileExistsError):
        _run(data_dir, tmp_path / "split", 4)
    _run(data_dir, tmp_path / "split", 4, resume=True)
    a = torch.load(tmp_path / "straight" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "split" / "last.pt", weights_only=True)
    assert a["progress"]["step"] == b["progress"]["step"] == 4
    assert a["progress"]["epoch"] == b["progress"]["epoch"] >= 1  # 6 utterances in 2 s batches: a few per epoch
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    log = [json.loads(line) for line in (tmp_path / "split" / "log.jsonl").read_text().splitlines()]
    assert [r["kind"] for r in log if r["kind"] in ("start", "stop")] == ["start", "stop", "start", "stop"]
    first_stop, second_stop = (r["elapsed_s"] for r in log if r["kind"] == "stop")
    assert 0 < first_stop < second_stop  # wall time accumulates across invocations
    train_steps = [r["step"] for r in log if r["kind"] == "train"]
    assert train_steps == [1, 2, 3, 4]
    val = [r for r in log if r["kind"] == "val"]
    assert [r["step"] for r in val] == [2, 3, 4] and all(r["wer_rnnt"] >= 0.0 for r in val)
    assert (tmp_path / "split" / "curve.png").stat().st_size > 10_000
    best = sorted(p.name for p in (tmp_path / "split").glob("best-step*.ouvir"))
    assert 1 <= len(best) <= 3
    loaded = load_checkpoint(tmp_path / "split" / "final.ouvir")
    assert loaded.config.encoder.d_model == 32
    assert loaded.tokenizer_model == (tmp_path / "split" / "tokenizer.model").read_bytes()
    for key, value in loaded.model.state_dict().items():
        assert torch.equal(value, b["model"][key]), key


def test_init_from_starts_with_a_checkpoints_weights_and_tokenizer(data_dir: Path, tmp_path: Path) -> None:
    _run(data_dir, tmp_path / "first", 2)
    _run(data_dir, tmp_path / "fresh", 1, seed=1)
    _run(data_dir, tmp_path / "second", 1, init_from=str(tmp_path / "first" / "final.ouvir"), seed=1)
    first, fresh, second = (load_checkpoint(tmp_path / name / "final.ouvir") for name in ("first", "fresh", "second"))
    assert second.tokenizer_model == first.tokenizer_model

    def distance(a: ASRModel, b: ASRModel) -> float:
        other = b.state_dict()
        return max(float((v - other[k]).abs().max()) for k, v in a.state_dict().items() if v.is_floating_point())

    moved = distance(first.model, second.model)  # one AdamW step at lr <= 1.5e-3 from the first run's weights
    assert 0 < moved < 5e-3
    assert distance(first.model, fresh.model) > 100 * moved  # not a fresh initialisation


def test_phases_ctc_only_then_a_frozen_encoder_trains_only_the_rnnt_head(data_dir: Path, tmp_path: Path) -> None:
    _run(data_dir, tmp_path / "ctc", 3, ctc_weight=1.0, dropout=0.0)
    log = [json.loads(line) for line in (tmp_path / "ctc" / "log.jsonl").read_text().splitlines()]
    assert all(r["rnnt"] == 0.0 for r in log if r["kind"] == "train")
    assert all(r["wer_rnnt"] == 1.0 for r in log if r["kind"] == "val")  # the RNNT head is not decoded
    _run(data_dir, tmp_path / "head", 3, init_from=str(tmp_path / "ctc" / "final.ouvir"), freeze_encoder=True)
    ctc, head = (load_checkpoint(tmp_path / name / "final.ouvir").model.state_dict() for name in ("ctc", "head"))
    moved = {k.split(".")[0] for k in ctc if not torch.equal(ctc[k], head[k])}
    assert moved == {"predictor", "joint"}
