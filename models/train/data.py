"""The synthetic-speech dataset: plan, render, write WAVs and JSONL manifests, measure the speed.

    python -m ouvir.models.train.data --out /work/data/synth_v1 --train 6000 --test 300 --seed 0

Layout of `out_dir`: ``train/000000.wav`` ... (16 kHz mono PCM16), ``train.jsonl``, ``test.jsonl``
(one line per utterance, NeMo's keys ``audio_filepath`` (relative to `out_dir`), ``duration``,
``text``, plus ``source``, ``engine``, ``voice``, ``rate``, ``pitch``, ``augment``), ``recipe.json``
(recipe name and seed) and ``stats.json`` (sizes and the measured synthesis speed).

Utterance i of a split is a pure function of (corpus, seed, split, i): its own generator draws the
voice, prosody and augmentation, and the text is entry i of a seeded permutation of the split's
sentences. So a build is reproducible, resumable (existing WAVs are kept) and can grow (a larger
count keeps the first utterances). The test split uses held-out sentences (`text.is_test_text`) AND
held-out voices (`tts.TEST_VOICES`) only; the training split only word-list sentences and
sentences from the other side of the hash, and only `tts.TRAIN_VOICES`.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from . import augment
from .text import Corpus, load_corpus, read_corpus, save_corpus, word_list_sentence
from .tts import (
    SAMPLE_RATE,
    TEST_VOICES,
    TRAIN_VOICES,
    Prosody,
    Voice,
    check_engines,
    cpu_seconds,
    timed_synthesize,
)

# synth-v2: + festival ked_diphone, more flite, voice shifts (augment.shift_voice) on half of the training
# utterances. Its test split is synth-v1's, utterance for utterance (same voices, texts and draws, no shifts).
RECIPE = "synth-v2"
SPLITS = {"train": 0, "test": 1}  # split -> generator key
ENGINE_WEIGHTS = {
    "train": {"espeak-ng": 0.4, "flite": 0.45, "festival": 0.15},
    "test": {"espeak-ng": 0.6, "flite": 0.4},
}
VOICES = {"train": TRAIN_VOICES, "test": TEST_VOICES}
AUGMENT = {"train": augment.AugmentConfig(p_shift=0.5), "test": augment.AugmentConfig()}
P_WORD_LIST = 0.1  # share of training utterances that are random dictionary words
RATE = (0.75, 1.15)  # espeak-ng: 131-201 words per minute
PITCH = (-4.0, 4.0)  # espeak-ng: -p 30-70
BABBLE_SENTENCES = 16


@dataclass(frozen=True)
class Utterance:
    split: str
    index: int
    seed: int
    source: str  # "fortunes" | "wordnet" | "bible" | "words"
    text: str
    voice: Voice
    prosody: Prosody
    augment: augment.AugmentParams

    @property
    def path(self) -> str:
        return f"{self.split}/{self.index:06d}.wav"

    def record(self, duration: float) -> dict:
        return {
            "audio_filepath": self.path, "duration": round(duration, 4), "text": self.text,
            "source": self.source, "engine": self.voice.engine, "voice": self.voice.id,
            "rate": self.prosody.rate, "pitch": self.prosody.pitch, "augment": asdict(self.augment),
        }  # fmt: skip


@dataclass(frozen=True)
class ManifestEntry:
    audio_filepath: Path  # absolute
    text: str
    duration: float
    source: str
    engine: str
    voice: str
    rate: float
    pitch: float
    augment: dict


def _rng(seed: int, split: str, *key: int) -> np.random.Generator:
    return np.random.default_rng([seed, SPLITS[split], *key])


def engine_weights(split: str, engines: tuple[str, ...] | None = None) -> dict[str, float]:
    """The split's engine shares, restricted to `engines` (renormalized; None: all of the recipe's)."""
    weights = {e: w for e, w in ENGINE_WEIGHTS[split].items() if engines is None or e in engines}
    if not weights:
        raise ValueError(f"no {split} engine among {engines} (the recipe has {', '.join(ENGINE_WEIGHTS[split])})")
    return {e: w / sum(weights.values()) for e, w in weights.items()}


def plan(corpus: Corpus, split: str, count: int, seed: int, engines: tuple[str, ...] | None = None) -> list[Utterance]:
    """The first `count` utterances of `split` (see the module docstring), from `engines` only if given."""
    pool = corpus.train if split == "train" else corpus.test
    order = _rng(seed, split, 0).permutation(len(pool))  # (len(pool),)
    engines_p = engine_weights(split, engines)
    utterances = []
    for i in range(count):
        rng = _rng(seed, split, 1, i)
        if split == "train" and rng.random() < P_WORD_LIST:
            source, text = "words", word_list_sentence(rng, corpus.words)
        else:
            source, text = pool[order[i % len(pool)]]
        engine = str(rng.choice(list(engines_p), p=list(engines_p.values())))
        voices = VOICES[split][engine]
        voice = voices[int(rng.integers(len(voices)))]
        prosody = Prosody(rate=round(float(rng.uniform(*RATE)), 3), pitch=round(float(rng.uniform(*PITCH)), 2))
        utterances.append(
            Utterance(split, i, seed, source, text, voice, prosody, augment.sample_params(rng, AUGMENT[split]))
        )
    return utterances


def babble_bank(corpus: Corpus, split: str, seed: int) -> np.ndarray:
    """(M,) float32: unit-RMS sentences of the split's own espeak-ng and flite voices, concatenated."""
    rng = _rng(seed, split, 3)
    pool = corpus.train if split == "train" else corpus.test
    voices = VOICES[split]["espeak-ng"] + VOICES[split]["flite"]
    pieces = []
    for k in rng.integers(0, len(pool), size=BABBLE_SENTENCES):
        voice = voices[int(rng.integers(len(voices)))]
        audio, _ = timed_synthesize(pool[k][1], voice, Prosody(rate=1.0, pitch=0.0))
        pieces.append(audio / (augment.rms(audio) + 1e-12))
    return np.concatenate(pieces).astype(np.float32)


def render(utt: Utterance, babble: np.ndarray) -> tuple[np.ndarray, float]:
    """-> ((N,) float32 waveform at 16 kHz, CPU seconds of the synthesizer alone)."""
    audio, tts_cpu_s = timed_synthesize(utt.text, utt.voice, utt.prosody)
    return augment.apply(audio, utt.augment, _rng(utt.seed, utt.split, 2, utt.index), babble), tts_cpu_s


_BABBLE: dict[str, np.ndarray] = {}  # per worker process, set by _init_worker


def _init_worker(banks: dict[str, np.ndarray]) -> None:
    _BABBLE.update(banks)


def _write_one(job: tuple[Utterance, Path]) -> dict:
    """Render one utterance to its WAV (atomically) -> its manifest record plus timings."""
    utt, out_dir = job
    start = cpu_seconds()
    audio, tts_cpu_s = render(utt, _BABBLE[utt.split])
    target = out_dir / utt.path
    partial = target.with_suffix(".partial.wav")
    sf.write(partial, audio, SAMPLE_RATE, subtype="PCM_16")
    os.replace(partial, target)
    cpu_s = cpu_seconds() - start
    record = utt.record(len(audio) / SAMPLE_RATE)
    return {"split": utt.split, "index": utt.index, "record": record, "cpu_s": cpu_s, "tts_cpu_s": tts_cpu_s}


def _run(jobs: list[tuple[Utterance, Path]], banks: dict[str, np.ndarray], workers: int) -> Iterator[dict]:
    if workers <= 1:
        _init_worker(banks)
        yield from map(_write_one, jobs)
        return
    with multiprocessing.get_context("spawn").Pool(workers, _init_worker, (banks,)) as pool:
        yield from pool.imap_unordered(_write_one, jobs, chunksize=4)


def _check_recipe(out_dir: Path, seed: int, engines: tuple[str, ...] | None) -> None:
    recipe = {"recipe": RECIPE, "seed": seed} | ({} if engines is None else {"engines": sorted(engines)})
    path = out_dir / "recipe.json"
    if path.exists():
        found = json.loads(path.read_text())
        if found != recipe:
            raise ValueError(f"{out_dir} was built with {found}, not {recipe}: use another directory")
    else:
        path.write_text(json.dumps(recipe) + "\n")


def _write_jsonl(path: Path, records: list[dict]) -> None:
    partial = path.with_suffix(".partial")
    partial.write_text("".join(json.dumps(r) + "\n" for r in records))
    os.replace(partial, path)


def _speed(audio_s: float, cpu_s: float, n: int) -> dict:
    return {
        "utterances": n, "audio_s": round(audio_s, 2), "cpu_s": round(cpu_s, 2),
        "audio_s_per_cpu_s": round(audio_s / cpu_s, 2) if cpu_s else None,
    }  # fmt: skip


def build_dataset(out_dir: Path | str, n_train: int, n_test: int, seed: int = 0, workers: int = 2,
                  engines: tuple[str, ...] | None = None, corpus_file: Path | None = None) -> dict:
    """Write (or complete) the dataset in `out_dir`; returns the stats also written to stats.json.

    `engines` restricts the synthesizers (None: the recipe's); `corpus_file` (written by `text.save_corpus`)
    replaces the Debian text packages."""
    check_engines(tuple(ENGINE_WEIGHTS["train"]) if engines is None else engines)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _check_recipe(out_dir, seed, engines)
    wall_start, times_start = time.perf_counter(), os.times()
    corpus = load_corpus() if corpus_file is None else read_corpus(corpus_file)
    counts = {"train": n_train, "test": n_test}
    utterances = {split: plan(corpus, split, n, seed, engines) for split, n in counts.items()}
    records: dict[str, dict[int, dict]] = {split: {} for split in counts}
    jobs = []
    for split, utts in utterances.items():
        (out_dir / split).mkdir(exist_ok=True)
        for utt in utts:
            path = out_dir / utt.path
            if path.exists():
                records[split][utt.index] = utt.record(sf.info(str(path)).duration)
            else:
                jobs.append((utt, out_dir))
    banks = {split: babble_bank(corpus, split, seed) for split in counts if any(u.split == split for u, _ in jobs)}
    per_engine: dict[str, list[float]] = {}  # engine -> [utterances, audio_s, tts_cpu_s]
    cpu_s = audio_s = 0.0
    for result in tqdm(_run(jobs, banks, workers), total=len(jobs), desc="synthesizing", unit="utt"):
        record = result["record"]
        records[result["split"]][result["index"]] = record
        engine = per_engine.setdefault(record["engine"], [0, 0.0, 0.0])
        engine[0] += 1
        engine[1] += record["duration"]
        engine[2] += result["tts_cpu_s"]
        cpu_s += result["cpu_s"]
        audio_s += record["duration"]
    for split in counts:
        _write_jsonl(out_dir / f"{split}.jsonl", [records[split][i] for i in sorted(records[split])])
    wall_s = time.perf_counter() - wall_start
    times = os.times()  # the pool has been joined: its CPU time is in children_*
    total_cpu_s = sum(times[:4]) - sum(times_start[:4])
    stats = {
        "recipe": RECIPE, "seed": seed, "workers": workers, "corpus": corpus.counts(),
        "splits": {split: _split_stats(list(records[split].values())) for split in counts},
        "this_run": {
            "synthesized": len(jobs), "kept": sum(counts.values()) - len(jobs), "wall_s": round(wall_s, 2),
            **_speed(audio_s, cpu_s, len(jobs)),
            "audio_s_per_wall_s": round(audio_s / wall_s, 2),
            "total_cpu_s": round(total_cpu_s, 2),  # everything: corpus, babble bank, process start-up
            "audio_s_per_total_cpu_s": round(audio_s / total_cpu_s, 2),
            "tts_per_engine": {e: _speed(a, c, int(n)) for e, (n, a, c) in sorted(per_engine.items())},
        },
    }  # fmt: skip
    (out_dir / "stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    return stats


def _split_stats(records: list[dict]) -> dict:
    durations = np.array([r["duration"] for r in records], dtype=np.float64)
    engines: dict[str, int] = {}
    for r in records:
        engines[r["engine"]] = engines.get(r["engine"], 0) + 1
    return {
        "utterances": len(records), "hours": round(float(durations.sum()) / 3600, 3),
        "mean_duration_s": round(float(durations.mean()), 3) if len(records) else None,
        "max_duration_s": round(float(durations.max()), 3) if len(records) else None,
        "voices": len({r["voice"] for r in records}), "engines": dict(sorted(engines.items())),
    }  # fmt: skip


def load_manifest(path: Path | str) -> list[ManifestEntry]:
    """Read a split's JSONL manifest; audio paths come back absolute."""
    path = Path(path)
    entries = []
    for line in path.read_text().splitlines():
        r = json.loads(line)
        fields = {**r, "audio_filepath": (path.parent / r["audio_filepath"]).resolve()}
        entries.append(ManifestEntry(**fields))
    return entries


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Build ouvir's synthetic-speech training set.")
    parser.add_argument("--out", type=Path, required=True, help="output directory (created)")
    parser.add_argument("--train", type=int, required=True, help="training utterances")
    parser.add_argument("--test", type=int, required=True, help="test utterances (held-out voices and text)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2, help="synthesis processes")
    parser.add_argument("--engines", nargs="+", choices=sorted(ENGINE_WEIGHTS["train"]),
                        help="only these synthesizers (their shares renormalized); default: all")
    parser.add_argument("--corpus", type=Path, help="a saved corpus (text.save_corpus) instead of the Debian texts")
    parser.add_argument("--save-corpus", type=Path, help="write the corpus to this file and exit")
    args = parser.parse_args(argv)
    if args.save_corpus:
        save_corpus(load_corpus(), args.save_corpus)
        return
    engines = None if args.engines is None else tuple(args.engines)
    stats = build_dataset(args.out, args.train, args.test, args.seed, args.workers, engines, args.corpus)
    print(json.dumps({"splits": stats["splits"], "this_run": stats["this_run"]}, indent=2))


if __name__ == "__main__":
    main()
