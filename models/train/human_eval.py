"""Word error rate on real human speech (``bench/human/``): ouvir's streaming recognizer beside pocketsphinx 5.1.1.

    python -m ouvir.models.train.human_eval --model M [--data bench/human] [--backend torch|onnx|pte]
        [--precision fp32|int8] [--lookahead-ms N] [--decoder rnnt|ctc] [--out report.json]

ouvir runs exactly as ``evaluate.py`` streams (``Recognizer``, Finals joined). pocketsphinx runs its bundled US
English model (acoustic model, language model, dictionary: its defaults) on the same 16 kHz mono audio, as
16-bit PCM, one utterance per ``start_utt``/``end_utt``. References and both hypotheses pass through
``normalize_text``; the WER is corpus-level (total edits / total reference words).
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import date
from importlib.metadata import version
from pathlib import Path

import numpy as np

from ouvir.engine.beam import describe, load_decoding
from ouvir.engine.bench.paths import portable_paths
from ouvir.models.train.batching import read_split
from ouvir.models.train.evaluate import evaluate, load_audio
from ouvir.models.train.text import spell_number
from ouvir.models.train.wer import word_error_rate, word_errors

SPLIT = "manifest"  # bench/human/manifest.jsonl
_INTEGER = re.compile(r"\d{1,3}(?:,\d{3})+|\d+")
_NOT_ALPHABET = re.compile(r"[^a-z']+")


def normalize_text(raw: str) -> str:
    """Any transcript or hypothesis -> ouvir's alphabet: lowercase a-z and apostrophe, single spaces. Integers
    are spelled as cardinals (``spell_number``); hyphens and other punctuation break words; apostrophes at a
    word's edges go (``'em`` -> ``em``), as the training texts have them."""
    text = raw.lower().replace("\u2019", "'").replace("\u2018", "'").replace("&", " and ")
    text = _INTEGER.sub(lambda m: f" {spell_number(int(m.group().replace(',', '')))} ", text)
    words = (w.strip("'") for w in _NOT_ALPHABET.sub(" ", text).split())
    return " ".join(w for w in words if w)


def to_pcm16(audio: np.ndarray) -> bytes:
    """(N,) float32 in [-1, 1] -> little-endian int16 bytes (the inverse of the engine's value / 2**15)."""
    return np.clip(np.round(audio * 32768.0), -32768, 32767).astype("<i2").tobytes()


def pocketsphinx_texts(audios: Sequence[np.ndarray]) -> list[str]:
    """pocketsphinx's default decoder (bundled en-us model, 16 kHz) on each utterance, as raw hypotheses. A fresh
    decoder per utterance, as ouvir gets a fresh stream: one decoder carries its cepstral mean from one utterance
    to the next, so its hypotheses would depend on the order of the set."""
    from pocketsphinx import Decoder

    texts = []
    for audio in audios:
        decoder = Decoder(loglevel="FATAL")
        decoder.start_utt()
        decoder.process_raw(to_pcm16(audio), full_utt=True)
        decoder.end_utt()
        hyp = decoder.hyp()
        texts.append(hyp.hypstr if hyp is not None else "")
    return texts


@dataclass(frozen=True)
class System:
    name: str  # "ouvir" | "pocketsphinx"
    setting: str  # what ran: backend / precision / look-ahead / decoder, or the package version and model
    wer: float


@dataclass(frozen=True)
class UtteranceResult:
    file: str
    reference: str
    ouvir: str
    pocketsphinx: str
    words: int
    ouvir_errors: int
    pocketsphinx_errors: int


@dataclass(frozen=True)
class Comparison:
    audio_s: float
    systems: tuple[System, ...]
    utterances: tuple[UtteranceResult, ...]


def compare(model: Path, data: Path, backend: str | None, precision: str | None, lookahead_ms: int | None,
            decoder: str | None, decoding: Path | None = None) -> Comparison:
    utts = read_split(data, SPLIT)
    refs = [normalize_text(u.text) for u in utts]
    audio_s = sum(u.duration for u in utts)
    search, lm, lexicon = load_decoding(decoding) if decoding is not None else (None, None, None)
    score = evaluate(model, utts, backend, precision, lookahead_ms, decoder, False, search, lm, lexicon)[0]
    ours = [normalize_text(h) for h in score.hypotheses]
    theirs = [normalize_text(h) for h in pocketsphinx_texts([load_audio(u.path) for u in utts])]
    systems = (
        System("ouvir", f"{score.backend} {score.precision} {score.lookahead_ms} ms {score.decoder}"
               f"{describe(search, lm, lexicon)}",
               word_error_rate(refs, ours)),
        System("pocketsphinx", f"pocketsphinx {version('pocketsphinx')}, bundled en-us model",
               word_error_rate(refs, theirs)),
    )
    rows = tuple(UtteranceResult(Path(u.path).name, ref, a, b, len(ref.split()), word_errors(ref, a)[0],
                                 word_errors(ref, b)[0])
                 for u, ref, a, b in zip(utts, refs, ours, theirs, strict=True))
    return Comparison(round(audio_s, 2), systems, rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ouvir.models.train.human_eval", description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, required=True, help=".ouvir / .nemo checkpoint or bundle directory")
    p.add_argument("--data", type=Path, default=Path("bench/human"), help="folder with manifest.jsonl")
    p.add_argument("--backend", choices=("torch", "onnx", "pte"), default=None)
    p.add_argument("--precision", choices=("fp32", "int8"), default=None, help="default: what the model holds")
    p.add_argument("--lookahead-ms", type=int, default=None)
    p.add_argument("--decoder", choices=("rnnt", "ctc"), default=None)
    p.add_argument("--decoding", type=Path, default=None,
                   help="a decoding.json (beam search, n-gram: pkg/default_model/decoding.json); default greedy")
    p.add_argument("--out", type=Path, default=None, help="JSON report")
    a = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    result = compare(a.model, a.data, a.backend, a.precision, a.lookahead_ms, a.decoder, a.decoding)
    for s in result.systems:
        print(f"{s.name:12s} WER {100 * s.wer:6.2f} %  ({s.setting})", flush=True)
    if a.out is not None:
        report = {"date": date.today().isoformat(), "model": str(a.model), "data": str(a.data),
                  "utterance_count": len(result.utterances), **asdict(result)}
        a.out.write_text(json.dumps(portable_paths(report), indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
