"""Word error rate of a model on a manifest, streaming (through the engine, any backend) and offline (torch).

    python -m ouvir.models.train.evaluate --model M --data DIR [--split test] [--backend torch|onnx|pte]
        [--precision fp32|int8] [--lookahead-ms N ...] [--decoder rnnt|ctc] [--offline] [--limit N] [--out F]

Streaming runs each utterance through ``Recognizer`` exactly as ``ouvir transcribe`` does (features, chunk
scheduler, the backend's graphs, the numpy decoders) and joins the Finals; offline runs the whole utterance
through the torch encoder at the same look-ahead with the torch greedy decoders. Prints one line per setting
and writes a JSON report with per-utterance hypotheses.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ouvir.engine.audio import FileSource
from ouvir.engine.beam import BeamSearch, beam_initial_state, load_decoding, rnnt_beam_step
from ouvir.engine.bench.paths import portable_paths
from ouvir.engine.lexicon import Lexicon
from ouvir.engine.ngram import NgramLM
from ouvir.engine.recognizer import Recognizer
from ouvir.models.train.batching import Utterance, read_split
from ouvir.models.train.wer import word_error_rate


@dataclass(frozen=True)
class Score:
    mode: str  # "streaming" | "offline"
    backend: str
    precision: str
    lookahead_ms: int
    decoder: str
    wer: float
    utterances: int
    audio_s: float
    compute_s: float
    hypotheses: tuple[str, ...]

    def line(self) -> str:
        return (f"{self.mode:9s} {self.backend:5s} {self.precision:4s} {self.lookahead_ms:5d} ms {self.decoder:4s} "
                f"WER {100 * self.wer:6.2f} %  ({self.utterances} utts, RTF {self.compute_s / self.audio_s:.3f})")


def load_audio(path: str) -> np.ndarray:
    with FileSource(path) as source:
        blocks = []
        while (block := source.read()) is not None:
            blocks.append(block)
    return np.concatenate(blocks) if blocks else np.zeros(0, np.float32)


def streaming_texts(rec: Recognizer, audios: Sequence[np.ndarray]) -> list[str]:
    texts = []
    for audio in audios:
        stream = rec.create_stream()
        stream.accept_waveform(audio, 16000)
        stream.input_finished()
        finals = [e.text for e in rec.decode(stream) if type(e).__name__ == "Final"]
        texts.append(" ".join(t for t in finals if t).strip())
    return texts


def offline_texts(model_path: Path, audios: Sequence[np.ndarray], context: tuple[int, int], decoder: str,
                  rec: Recognizer | None = None) -> list[str]:
    """Whole utterances through the torch encoder; greedy heads, or ``rec``'s beam search (its heads, n-gram and
    lexicon) over all frames at once when it has one."""
    import torch

    from ouvir.engine.features import log_mel
    from ouvir.models.decoding import ctc_greedy, ctc_initial_state, rnnt_greedy, rnnt_initial_state
    if model_path.suffix == ".nemo":
        from ouvir.models.nemo import load_nemo as load
    else:
        from ouvir.models.checkpoint import load_checkpoint as load
    loaded = load(model_path)
    model, cfg, tok = loaded.model, loaded.config, loaded.tokenizer
    texts = []
    with torch.inference_mode():
        for audio in audios:
            feats = torch.from_numpy(log_mel(audio, cfg.features, loaded.window, loaded.fb))[None]  # (1, F, T)
            length = torch.tensor([len(audio) // cfg.features.hop_length])
            encoded, enc_len = model.encoder(feats, length, context)  # (1, D, T')
            if rec is not None and rec.search is not None:
                frames = encoded[0, :, : int(enc_len[0])].T.numpy()  # (T', D)
                state = beam_initial_state(rec.backend, cfg.blank_id)
                state = rnnt_beam_step(rec.backend, frames, state, cfg.blank_id, rec.search, rec.lm, rec.spelling)
                texts.append(tok.decode(list(state.best.tokens)))
                continue
            if decoder == "ctc":
                hyp, _ = ctc_greedy(model.ctc(encoded), enc_len, ctc_initial_state(1, cfg.blank_id))
            else:
                state = rnnt_initial_state(model.predictor, model.joint, 1)
                hyp, _ = rnnt_greedy(model.predictor, model.joint, encoded, enc_len, state, cfg.rnnt.max_symbols)
            texts.append(tok.decode(hyp.tokens[0]))
    return texts


def evaluate(model: Path, utts: Sequence[Utterance], backend: str | None, precision: str | None,
             lookahead_ms: int | None, decoder: str | None, offline: bool, search: BeamSearch | None = None,
             lm: NgramLM | None = None, lexicon: Lexicon | None = None) -> list[Score]:
    audios = [load_audio(u.path) for u in utts]
    refs = [u.text for u in utts]
    audio_s = sum(len(a) for a in audios) / 16000
    rec = Recognizer.open(model, backend, precision, lookahead_ms, decoder, search=search, lm=lm, lexicon=lexicon)
    ms = round(rec.info.lookahead_ms)
    start = time.process_time()
    hyps = streaming_texts(rec, audios)
    precision = rec.backend.precision  # what ran: a bundle runs as what it holds
    scores = [Score("streaming", rec.backend.name, precision, ms, rec.decoder, word_error_rate(refs, hyps),
                    len(utts), audio_s, time.process_time() - start, tuple(hyps))]
    if offline:
        start = time.process_time()
        hyps = offline_texts(model, audios, tuple(rec.info.geometry.att_context_size), rec.decoder, rec)
        scores.append(Score("offline", "torch", "fp32", ms, rec.decoder, word_error_rate(refs, hyps), len(utts),
                            audio_s, time.process_time() - start, tuple(hyps)))
    return scores


def manifest_labels(data: Path, split: str, count: int) -> list[dict[str, str]] | None:
    """The first ``count`` utterances' ``engine`` and ``voice`` from ``<split>.jsonl``, when it has them."""
    manifest = data / f"{split}.jsonl"
    if not manifest.is_file():
        return None
    rows = [json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines() if line.strip()][:count]
    if len(rows) < count or not all("engine" in r and "voice" in r for r in rows):
        return None
    return [{"engine": r["engine"], "voice": r["voice"]} for r in rows]


def breakdown(refs: Sequence[str], hyps: Sequence[str], labels: Sequence[dict[str, str]]) -> dict[str, dict]:
    """WER per synthesizer and per voice: which held-out voices the model has not learned."""
    out: dict[str, dict] = {}
    for key in ("engine", "voice"):
        groups: dict[str, tuple[list[str], list[str]]] = {}
        for ref, hyp, label in zip(refs, hyps, labels, strict=True):
            r, h = groups.setdefault(label[key], ([], []))
            r.append(ref)
            h.append(hyp)
        out[key] = {name: round(word_error_rate(r, h), 4) for name, (r, h) in sorted(groups.items())}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ouvir.models.train.evaluate", description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, required=True, help=".ouvir / .nemo checkpoint or bundle directory")
    p.add_argument("--data", type=Path, required=True, help="dataset folder (test.jsonl or test.pack/)")
    p.add_argument("--split", default="test")
    p.add_argument("--backend", choices=("torch", "onnx", "pte"), default=None)
    p.add_argument("--precision", choices=("fp32", "int8"), default=None, help="default: what the model holds")
    p.add_argument("--lookahead-ms", type=int, nargs="*", default=[None])
    p.add_argument("--decoder", choices=("rnnt", "ctc"), default=None)
    p.add_argument("--offline", action="store_true", help="also the offline WER (torch checkpoints only)")
    p.add_argument("--beam", type=int, default=0, help="RNNT beam search of this width (0: greedy)")
    p.add_argument("--lm", type=Path, default=None, help="an n-gram (.npz) fused into the beam search")
    p.add_argument("--lm-weight", type=float, nargs="*", default=[0.0], help="one run per weight")
    p.add_argument("--token-bonus", type=float, default=0.0)
    p.add_argument("--lexicon", type=Path, default=None, help="a word list the beam holds hypotheses to")
    p.add_argument("--oov-penalty", type=float, nargs="*", default=[0.0], help="one run per penalty")
    p.add_argument("--decoding", type=Path, default=None,
                   help="a decoding.json (e.g. pkg/default_model/decoding.json) instead of --beam / --lm flags")
    p.add_argument("--limit", type=int, default=None, help="first N utterances only")
    p.add_argument("--out", type=Path, default=None, help="JSON report")
    a = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    utts = read_split(a.data, a.split)[: a.limit]
    refs = [u.text for u in utts]
    labels = manifest_labels(a.data, a.split, len(utts))
    lm = NgramLM.load(a.lm) if a.lm else None
    lexicon = Lexicon.load(a.lexicon) if a.lexicon else None
    searches: list[BeamSearch | None] = [None]
    if a.beam:
        searches = [BeamSearch(a.beam, w, a.token_bonus, p) for w in a.lm_weight for p in a.oov_penalty]
    if a.decoding is not None:
        search, lm, lexicon = load_decoding(a.decoding)
        searches = [search]
    scores, breakdowns = [], []
    for ms, search in ((ms, s) for ms in a.lookahead_ms for s in searches):
        if search is not None:
            print(f"beam {search.beam}, lm weight {search.lm_weight}, token bonus {search.token_bonus}, "
                  f"oov penalty {search.oov_penalty}", flush=True)
        fused = (lm, lexicon) if search is not None else (None, None)  # the search ignores a weight or penalty of 0
        for score in evaluate(a.model, utts, a.backend, a.precision, ms, a.decoder, a.offline, search, *fused):
            print(score.line(), flush=True)
            scores.append((score, asdict(search) if search is not None else None))
            if labels is not None:
                breakdowns.append(breakdown(refs, score.hypotheses, labels))
                print("          " + "  ".join(f"{k} {100 * w:.1f} %" for k, w in breakdowns[-1]["engine"].items()))
    if a.out is not None:
        report = {"model": str(a.model), "data": str(a.data), "split": a.split, "references": refs,
                  "scores": [{**asdict(s), "search": search, **({"breakdown": b} if b else {})}
                             for (s, search), b in zip(scores, breakdowns or [None] * len(scores), strict=True)]}
        a.out.write_text(json.dumps(portable_paths(report), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
