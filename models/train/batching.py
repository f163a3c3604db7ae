"""Training data: utterance sources, packed int16 shards, the torch Dataset, length-bucketed batches, collate.

Two on-disk forms of a split, both read without soundfile when the audio is int16 ``.npy``:

* a JSONL manifest (NeMo keys ``audio_filepath`` relative to the manifest's folder, ``duration``, ``text``),
  the data recipe's ``train.jsonl`` / ``test.jsonl``; ``.wav``/``.flac`` audio is read with soundfile
  (imported only then), ``.npy`` audio must be int16 at 16 kHz;
* a pack (``pack_split``): ``<split>.pack/index.json`` with the texts, durations and where each utterance
  lies in a few ``audio_NNN.npy`` int16 shards (memory-mapped at train time).

A batch key is ``(index, seed)``: the seed drives that utterance's on-the-fly augmentation and dither,
so a batch is a pure function of (data seed, epoch, position) and a resumed run sees the same batches.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from ouvir.engine.features import log_mel
from ouvir.engine.features_config import FeatureConfig

SAMPLE_RATE = 16_000
INDEX = "index.json"


@dataclass(frozen=True)
class Utterance:
    text: str
    duration: float  # seconds
    path: str  # absolute audio file, or the shard file of a pack
    offset: int = 0  # first sample within a shard (packs only)
    samples: int = 0  # sample count within a shard (packs only)


def read_split(data_dir: Path | str, split: str) -> list[Utterance]:
    """``<split>.pack/index.json`` if the data folder has it, else ``<split>.jsonl``."""
    data_dir = Path(data_dir)
    pack = data_dir / f"{split}.pack" / INDEX
    if pack.is_file():
        return read_pack(pack.parent)
    manifest = data_dir / f"{split}.jsonl"
    if manifest.is_file():
        return read_manifest(manifest)
    raise FileNotFoundError(f"{data_dir} has neither {pack.relative_to(data_dir)} nor {manifest.name}")


def read_manifest(path: Path | str) -> list[Utterance]:
    path = Path(path)
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            r = json.loads(line)
            audio = (path.parent / r["audio_filepath"]).resolve()
            out.append(Utterance(r["text"], float(r["duration"]), str(audio)))
    return out


def read_pack(pack_dir: Path | str) -> list[Utterance]:
    pack_dir = Path(pack_dir)
    index = json.loads((pack_dir / INDEX).read_text(encoding="utf-8"))
    if index["sample_rate"] != SAMPLE_RATE:
        raise ValueError(f"{pack_dir}: sample rate {index['sample_rate']}, expected {SAMPLE_RATE}")
    shards = [str((pack_dir / s).resolve()) for s in index["shards"]]
    return [Utterance(u["text"], u["samples"] / SAMPLE_RATE, shards[u["shard"]], u["offset"], u["samples"])
            for u in index["utterances"]]


def _read_file(path: str) -> np.ndarray:
    """An audio file -> (N,) int16 at 16 kHz."""
    if path.endswith(".npy"):
        audio = np.load(path)
        if audio.dtype != np.int16 or audio.ndim != 1:
            raise ValueError(f"{path}: expected 1-D int16, got {audio.dtype} {audio.shape}")
        return audio
    import soundfile as sf

    audio, rate = sf.read(path, dtype="int16", always_2d=False)
    if rate != SAMPLE_RATE or audio.ndim != 1:
        raise ValueError(f"{path}: expected 16 kHz mono, got {rate} Hz, shape {audio.shape}")
    return audio


class AudioReader:
    """Reads an utterance's int16 samples; pack shards are memory-mapped once per process."""

    def __init__(self) -> None:
        self._shards: dict[str, np.ndarray] = {}

    def __call__(self, utt: Utterance) -> np.ndarray:
        if utt.samples == 0:
            return _read_file(utt.path)
        shard = self._shards.get(utt.path)
        if shard is None:
            shard = self._shards[utt.path] = np.load(utt.path, mmap_mode="r")
        return np.asarray(shard[utt.offset : utt.offset + utt.samples])  # (N,) int16


def pack_split(utterances: Sequence[Utterance], out_dir: Path | str, shard_mb: float = 200.0) -> dict[str, Any]:
    """Write ``out_dir/index.json`` and int16 ``audio_NNN.npy`` shards of about ``shard_mb`` MB each."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    read = AudioReader()
    limit = int(shard_mb * 1e6 / 2)  # samples per shard
    shards: list[str] = []
    entries: list[dict[str, Any]] = []
    pending: list[np.ndarray] = []
    filled = 0

    def flush() -> None:
        nonlocal filled
        name = f"audio_{len(shards):03d}.npy"
        np.save(out_dir / name, np.concatenate(pending) if pending else np.zeros(0, np.int16))
        shards.append(name)
        pending.clear()
        filled = 0

    for utt in utterances:
        audio = read(utt)
        if filled and filled + len(audio) > limit:
            flush()
        entries.append({"shard": len(shards), "offset": filled, "samples": len(audio), "text": utt.text})
        pending.append(audio)
        filled += len(audio)
    if pending:
        flush()
    index = {"sample_rate": SAMPLE_RATE, "shards": shards, "utterances": entries}
    tmp = out_dir / (INDEX + ".tmp")
    tmp.write_text(json.dumps(index, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, out_dir / INDEX)
    return {"utterances": len(entries), "shards": len(shards),
            "hours": round(sum(e["samples"] for e in entries) / SAMPLE_RATE / 3600, 3)}


@dataclass(frozen=True)
class OnlineAugment:
    """Extra on-the-fly waveform augmentation on top of what the data recipe baked in (augment.py)."""

    p_speed: float = 0.5
    speed: tuple[float, float] = (0.9, 1.1)
    p_noise: float = 0.3
    snr_db: tuple[float, float] = (10.0, 40.0)
    p_reverb: float = 0.1
    rt60_s: tuple[float, float] = (0.1, 0.5)
    p_shift: float = 0.0  # voice shift (pitch + formants, sox): a new speaker each epoch; 0 draws nothing
    shift_cents: tuple[float, float] = (-400.0, 300.0)
    p_telephone: float = 0.0  # a telephone channel (300-3400 Hz, mu-law) after the noise; 0 draws nothing

    def __call__(self, audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        from ouvir.models.train import augment  # soxr + the data recipe: only when augmenting

        if self.p_shift > 0 and rng.random() < self.p_shift:
            audio = augment.shift_voice(audio, float(rng.uniform(*self.shift_cents)))
        if rng.random() < self.p_speed:
            audio = augment.change_speed(audio, float(rng.uniform(*self.speed)))
        if rng.random() < self.p_reverb:
            audio = augment.reverberate(audio, augment.room_impulse_response(rng, float(rng.uniform(*self.rt60_s))))
        if rng.random() < self.p_noise and len(audio) > 1:
            kind = str(rng.choice(("white", "pink", "brown")))
            snr = float(rng.uniform(*self.snr_db))
            fast = 1 << (len(audio) - 1).bit_length()  # a power-of-two FFT: ~10x faster than odd lengths
            noise = augment.colored_noise(rng, fast, kind)[: len(audio)]  # (N,)
            audio = audio + noise * (augment.rms(audio) * 10 ** (-snr / 20))
        if self.p_telephone > 0 and rng.random() < self.p_telephone:
            audio = augment.telephone(audio)
        peak = float(np.max(np.abs(audio))) if len(audio) else 0.0
        return (audio * (0.99 / peak) if peak > 0.99 else audio).astype(np.float32)


class Example(NamedTuple):
    features: np.ndarray  # (F, T) float32 log-mel, last column(s) zero
    length: int  # valid columns = samples // hop
    tokens: list[int]
    text: str


class SpeechDataset(torch.utils.data.Dataset):
    """key ``(index, seed)`` -> ``Example``: int16 audio -> [augment] -> [dither] -> numpy log-mel -> tokens."""

    def __init__(self, utterances: Sequence[Utterance], features: FeatureConfig, tokenizer_model: bytes,
                 augment: OnlineAugment | None = None, dither: bool = False):
        self.utterances = list(utterances)
        self.features = features
        self.tokenizer_model = tokenizer_model
        self.augment = augment
        self.dither = dither
        self._tokenizer = None
        self._read = AudioReader()

    def __len__(self) -> int:
        return len(self.utterances)

    def __getitem__(self, key: tuple[int, int]) -> Example:
        index, seed = key
        utt = self.utterances[index]
        if self._tokenizer is None:  # built lazily: one per worker process
            from ouvir.models.tokenizer import Tokenizer

            self._tokenizer = Tokenizer(self.tokenizer_model)
        audio = self._read(utt).astype(np.float32) / 32768.0  # (N,)
        rng = np.random.default_rng([seed, index])
        if self.augment is not None:
            audio = self.augment(audio, rng)
        if self.dither and self.features.dither > 0:
            audio = audio + np.float32(self.features.dither) * rng.standard_normal(len(audio), dtype=np.float32)
        feats = log_mel(audio, self.features)  # (F, N // hop + 1)
        return Example(feats, len(audio) // self.features.hop_length, self._tokenizer.encode(utt.text), utt.text)


class Batch(NamedTuple):
    features: torch.Tensor  # (B, F, T) float32, zero padded
    lengths: torch.Tensor  # (B,) int64 valid feature columns
    targets: torch.Tensor  # (B, U) int64 token ids, zero padded
    target_lengths: torch.Tensor  # (B,) int64
    texts: list[str]

    def to(self, device: torch.device | str) -> Batch:
        return Batch(self.features.to(device, non_blocking=True), self.lengths.to(device),
                     self.targets.to(device), self.target_lengths.to(device), self.texts)


def collate(examples: Sequence[Example]) -> Batch:
    bins = examples[0].features.shape[0]
    frames = max(e.features.shape[1] for e in examples)
    labels = max(max(len(e.tokens) for e in examples), 1)
    feats = np.zeros((len(examples), bins, frames), dtype=np.float32)  # (B, F, T)
    targets = np.zeros((len(examples), labels), dtype=np.int64)  # (B, U)
    for b, e in enumerate(examples):
        feats[b, :, : e.features.shape[1]] = e.features
        targets[b, : len(e.tokens)] = e.tokens
    return Batch(
        torch.from_numpy(feats),
        torch.tensor([e.length for e in examples], dtype=torch.int64),
        torch.from_numpy(targets),
        torch.tensor([len(e.tokens) for e in examples], dtype=torch.int64),
        [e.text for e in examples],
    )


def bucket_batches(durations: Sequence[float], batch_seconds: float, seed: int, shuffle: bool = True,
                   max_batch: int = 512) -> list[list[int]]:
    """Indices grouped so that ``len(batch) * longest <= batch_seconds`` (padded audio per batch).

    With ``shuffle``, utterances are sorted by duration after a random jitter of up to 10 %, so the buckets
    differ between seeds (epochs), and the batch order is shuffled; without it, sorted and in order.
    A single utterance longer than ``batch_seconds`` still gets its own batch.
    """
    d = np.asarray(durations, dtype=np.float64)
    rng = np.random.default_rng(seed)
    keys = d * rng.uniform(0.95, 1.05, size=len(d)) if shuffle else d
    order = np.argsort(keys, kind="stable")
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0.0
    for i in order.tolist():
        longest_next = max(longest, d[i])
        if current and (longest_next * (len(current) + 1) > batch_seconds or len(current) >= max_batch):
            batches.append(current)
            current, longest_next = [], d[i]
        current.append(i)
        longest = longest_next
    if current:
        batches.append(current)
    if shuffle:
        batches = [batches[j] for j in rng.permutation(len(batches))]
    return batches


class TrainBatches(torch.utils.data.Sampler):
    """Endless batches of ``(index, seed)`` keys, epoch after epoch, from batch ``position`` of ``epoch``.

    Epoch e uses ``bucket_batches(..., seed=seed * 100_003 + e)`` and that seed for every key, so batch
    contents, order and augmentation are a pure function of (seed, epoch, position). ``positions()``
    yields each batch's ``(epoch, position)`` in the same order, for the consumer to track progress
    (a DataLoader with workers runs the sampler ahead of what has been consumed).
    """

    def __init__(self, durations: Sequence[float], batch_seconds: float, seed: int, epoch: int = 0,
                 position: int = 0):
        self.durations = list(durations)
        self.batch_seconds = batch_seconds
        self.seed = seed
        self.epoch = epoch
        self.position = position

    def _epochs(self) -> Iterator[tuple[int, int, list[list[int]]]]:
        epoch, start = self.epoch, self.position
        while True:
            epoch_seed = self.seed * 100_003 + epoch
            batches = bucket_batches(self.durations, self.batch_seconds, epoch_seed)
            for position in range(start, len(batches)):
                yield epoch, position, [[i, epoch_seed] for i in batches[position]]
            epoch, start = epoch + 1, 0

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for _, _, keys in self._epochs():
            yield [(i, s) for i, s in keys]

    def positions(self) -> Iterator[tuple[int, int]]:
        for epoch, position, _ in self._epochs():
            yield epoch, position
