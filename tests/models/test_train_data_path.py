"""Training data path: manifests and packs, the dataset's features and tokens, bucketing, collate, SpecAugment."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ouvir.engine.features import log_mel
from ouvir.engine.features_config import FeatureConfig
from ouvir.models.tokenizer import Tokenizer
from ouvir.models.train.batching import (
    SpeechDataset,
    TrainBatches,
    bucket_batches,
    collate,
    pack_split,
    read_manifest,
    read_split,
)
from ouvir.models.train.specaug import SpecAugmentConfig, spec_augment
from ouvir.models.train.tokenizer_train import train_tokenizer
from ouvir.models.train.wer import edit_distance, word_error_rate

TEXTS = ["one two three", "four five", "six seven eight nine", "ten"]


def write_npy_manifest(folder: Path, split: str, texts: list[str], seconds: list[float]) -> list[np.ndarray]:
    """int16 .npy tones with a JSONL manifest (NeMo keys, paths relative to the manifest)."""
    (folder / split).mkdir(parents=True, exist_ok=True)
    audios, lines = [], []
    for i, (text, s) in enumerate(zip(texts, seconds, strict=True)):
        n = int(s * 16000)
        audio = (8000 * np.sin(2 * np.pi * (200 + 50 * i) * np.arange(n) / 16000)).astype(np.int16)
        np.save(folder / split / f"{i}.npy", audio)
        audios.append(audio)
        lines.append(json.dumps({"audio_filepath": f"{split}/{i}.npy", "duration": n / 16000, "text": text}))
    (folder / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    return audios


def test_pack_joins_the_splits_of_several_data_folders(tmp_path: Path) -> None:
    from ouvir.models.train.train import main

    write_npy_manifest(tmp_path / "v1", "train", TEXTS[:2], [0.5, 0.25])
    write_npy_manifest(tmp_path / "v1", "test", TEXTS[3:], [0.125])
    write_npy_manifest(tmp_path / "v2", "train", TEXTS[2:], [1.0, 0.125])
    (tmp_path / "v2" / "test.jsonl").write_text("")  # a training-only build
    main(["pack", "--data", str(tmp_path / "v1"), str(tmp_path / "v2"), "--out", str(tmp_path / "all")])
    assert [u.text for u in read_split(tmp_path / "all", "train")] == TEXTS
    assert [u.text for u in read_split(tmp_path / "all", "test")] == TEXTS[3:]


def test_pack_round_trip_and_split_lookup(tmp_path: Path) -> None:
    audios = write_npy_manifest(tmp_path / "src", "train", TEXTS, [0.5, 0.25, 1.0, 0.125])
    utts = read_split(tmp_path / "src", "train")
    assert [u.text for u in utts] == TEXTS
    assert [u.duration for u in utts] == [0.5, 0.25, 1.0, 0.125]
    stats = pack_split(utts, tmp_path / "packed" / "train.pack", shard_mb=0.02)  # 10 000 samples per shard
    assert stats == {"utterances": 4, "shards": 4, "hours": 0.001}  # 8000 | 4000 | 16000 | 2000 samples
    index = json.loads((tmp_path / "packed" / "train.pack" / "index.json").read_text())
    assert [(u["shard"], u["offset"], u["samples"]) for u in index["utterances"]] == [
        (0, 0, 8000), (1, 0, 4000), (2, 0, 16000), (3, 0, 2000)]
    assert np.load(tmp_path / "packed" / "train.pack" / "audio_002.npy").dtype == np.int16
    packed = read_split(tmp_path / "packed", "train")  # the pack wins over a manifest
    assert [u.text for u in packed] == TEXTS
    assert [u.duration for u in packed] == [0.5, 0.25, 1.0, 0.125]
    fc = FeatureConfig()
    tok = train_tokenizer(TEXTS * 5, vocab_size=30)
    from_manifest = SpeechDataset(utts, fc, tok)
    from_pack = SpeechDataset(packed, fc, tok)
    for i, audio in enumerate(audios):
        a, b = from_manifest[(i, 0)], from_pack[(i, 0)]
        np.testing.assert_array_equal(a.features, b.features)
        np.testing.assert_array_equal(a.features, log_mel(audio.astype(np.float32) / 32768, fc))
        assert a.length == len(audio) // 160 and a.text == TEXTS[i]
        assert Tokenizer(tok).decode(a.tokens) == TEXTS[i]


def test_read_manifest_resolves_relative_paths(tmp_path: Path) -> None:
    write_npy_manifest(tmp_path, "test", TEXTS[:2], [0.1, 0.2])
    utts = read_manifest(tmp_path / "test.jsonl")
    assert utts[1].path == str((tmp_path / "test" / "1.npy").resolve())
    with pytest.raises(FileNotFoundError, match=r"train\.jsonl"):
        read_split(tmp_path, "train")


def test_dither_is_seeded_per_key(tmp_path: Path) -> None:
    write_npy_manifest(tmp_path, "train", TEXTS[:1], [0.3])
    ds = SpeechDataset(read_split(tmp_path, "train"), FeatureConfig(), train_tokenizer(TEXTS, 20), dither=True)
    np.testing.assert_array_equal(ds[(0, 5)].features, ds[(0, 5)].features)
    assert not np.array_equal(ds[(0, 5)].features, ds[(0, 6)].features)


def test_bucket_batches_respect_the_padded_budget_and_cover_every_utterance() -> None:
    rng = np.random.default_rng(0)
    durations = rng.uniform(1.0, 12.0, size=300)
    batches = bucket_batches(durations, 60.0, seed=3)
    assert sorted(i for b in batches for i in b) == list(range(300))
    for b in batches:
        assert len(b) * max(durations[i] for i in b) <= 60.0
    assert bucket_batches(durations, 60.0, seed=3) == batches
    assert bucket_batches(durations, 60.0, seed=4) != batches
    in_order = bucket_batches(durations, 60.0, seed=0, shuffle=False)
    assert [i for b in in_order for i in b] == list(np.argsort(durations, kind="stable"))
    assert bucket_batches([100.0, 1.0], 10.0, seed=0, shuffle=False) == [[1], [0]]  # too long: alone


def test_train_batches_run_epoch_after_epoch_and_resume_from_a_position() -> None:
    durations = np.linspace(1, 5, 40)
    sampler = TrainBatches(durations, 10.0, seed=1)
    stream = list(itertools.islice(iter(sampler), 60))
    where = list(itertools.islice(sampler.positions(), 60))
    per_epoch = len(bucket_batches(durations, 10.0, seed=100_003))
    assert where[:per_epoch + 1] == [(0, p) for p in range(per_epoch)] + [(1, 0)]
    epoch0 = [i for batch in stream[:per_epoch] for i, _ in batch]
    assert sorted(epoch0) == list(range(40))  # one epoch = every utterance once
    assert {s for batch in stream[:per_epoch] for _, s in batch} == {100_003}
    assert stream[per_epoch] != stream[0] and stream[per_epoch][0][1] == 100_004
    resumed = TrainBatches(durations, 10.0, seed=1, epoch=1, position=2)
    k = per_epoch + 2
    assert list(itertools.islice(iter(resumed), 10)) == stream[k : k + 10]
    assert list(itertools.islice(resumed.positions(), 1)) == [(1, 2)]


def test_collate_pads_features_and_targets(tmp_path: Path) -> None:
    write_npy_manifest(tmp_path, "train", TEXTS[:3], [0.5, 0.2, 0.3])
    ds = SpeechDataset(read_split(tmp_path, "train"), FeatureConfig(), train_tokenizer(TEXTS * 3, 25))
    examples = [ds[(i, 0)] for i in range(3)]
    batch = collate(examples)
    assert batch.features.shape == (3, 80, 51)
    assert batch.lengths.tolist() == [50, 20, 30]
    assert batch.target_lengths.tolist() == [len(e.tokens) for e in examples]
    for b, e in enumerate(examples):
        assert batch.targets[b, : len(e.tokens)].tolist() == e.tokens
        assert (batch.targets[b, len(e.tokens) :] == 0).all()
        assert torch.equal(batch.features[b, :, : e.features.shape[1]], torch.from_numpy(e.features))
        assert (batch.features[b, :, e.features.shape[1] :] == 0).all()


def test_spec_augment_masks_bands_and_spans_within_bounds() -> None:
    torch.manual_seed(0)
    feats = torch.randn(64, 80, 200) + 10.0  # nothing is 0 before masking
    lengths = torch.full((64,), 200)
    lengths[::2] = 100
    cfg = SpecAugmentConfig.from_dict({"_target_": "x", "freq_masks": 2, "time_masks": 3, "freq_width": 27,
                                       "time_width": 0.05})
    out = spec_augment(feats, lengths, cfg)
    masked = out == 0.0  # (B, F, T)
    full_rows = masked.all(dim=2)  # (B, F) frequency bins masked everywhere
    full_cols = masked.all(dim=1)  # (B, T) frames masked in every bin
    assert (full_rows.sum(1) <= 2 * 27).all() and full_rows.sum(1).float().mean() > 10
    for b in range(64):
        span = max(1, int(int(lengths[b]) * 0.05))
        assert int(full_cols[b].sum()) <= 3 * span
        assert not full_cols[b, int(lengths[b]) :].any() or int(lengths[b]) == 200
    assert torch.equal(out[~masked], feats[~masked])
    assert not SpecAugmentConfig().active
    with pytest.raises(ValueError, match="rect_masks"):
        SpecAugmentConfig.from_dict({"rect_masks": 5})


def test_spec_augment_mean_mask_uses_each_utterances_valid_frames() -> None:
    torch.manual_seed(0)
    feats = torch.randn(4, 80, 100) - 8.0  # log-mel-like: far below 0
    feats[1::2, :, 60:] = 0.0  # padding of the short utterances
    lengths = torch.tensor([100, 60, 100, 60])
    cfg = SpecAugmentConfig.from_dict({"freq_masks": 2, "time_masks": 4, "freq_width": 27, "time_width": 0.05,
                                       "mask_value": "mean"})
    out = spec_augment(feats, lengths, cfg)
    for b in range(4):
        n = int(lengths[b])
        mean = feats[b, :, :n].mean()
        changed = out[b] != feats[b]
        assert changed.any()
        assert torch.allclose(out[b][changed], mean.expand(int(changed.sum())))
        assert float(mean) < -7.0  # not the padding's zeros, not NeMo's loud 0.0
    with pytest.raises(ValueError, match="mask_value"):
        SpecAugmentConfig.from_dict({"mask_value": "median"})


def test_wer_counts_substitutions_insertions_deletions() -> None:
    assert edit_distance(["a", "b", "c"], ["a", "x", "c", "d"]) == 2
    assert word_error_rate(["the cat sat", "hello"], ["the cat sat", "hello"]) == 0.0
    assert word_error_rate(["the cat sat", "hello world"], ["the bat", "hello there world"]) == pytest.approx(3 / 5)
    with pytest.raises(ValueError):
        word_error_rate(["a"], [])


def test_tokenizer_is_deterministic_and_round_trips() -> None:
    texts = [f"{a} {b} {c}" for a in ("red", "green", "blue") for b in ("cats", "dogs") for c in ("run", "sleep")]
    model = train_tokenizer(texts, vocab_size=40)
    assert model == train_tokenizer(texts, vocab_size=40)
    tok = Tokenizer(model)
    assert tok.pieces[0] == "<unk>" and len(tok.pieces) <= 40
    assert tok.decode(tok.encode("Green DOGS sleep")) == "green dogs sleep"  # nmt_nfkc_cf lower-cases
