"""``--config large``: NeMo's 114M-parameter streaming recipe with seeded random weights, as an ouvir checkpoint.

The recipe is ``fastconformer_hybrid_transducer_ctc_bpe_streaming.yaml`` (17 layers, d_model 512, 8 heads,
RNNT 640/640 + CTC) read by ``ouvir.models.config.from_nemo`` with a 1024-piece SentencePiece vocabulary
(trained, seeded, on pseudo-words: the pieces only matter for detokenization) and the requested
look-aheads as ``att_context_size`` (the recipe's own comment lists [[70,13],[70,6],[70,1],[70,0]]).
Weights are PyTorch's default initialisation after ``torch.manual_seed(seed)``.

Random weights emit a token on almost every frame (blank is one class of 1025), often up to
``max_symbols`` per frame, which would make RNNT decoding cost far more than with a trained model. So the
blank logit's bias of both heads is raised until greedy decoding of the benchmark audio emits at most
``EMISSION_RATE`` tokens per encoder frame at every benchmarked look-ahead (trained English models emit about
3 tokens per second, 0.25 per 80 ms frame). The audio is looped to ``CALIBRATION_S``: a random prediction
network emits more the longer it runs (calibrated on the first 10 s at 480 ms only, a 60 s stream emitted
19 tokens per second, 6x the target, and the RNNT heads took a quarter of the time). The report records the
token rate each run measured. torch is imported inside the builders only: ``ouvir bench`` (engine/bench) reads
this module's constants, ``recipe_path`` and ``context_for`` without it, and only its parent process builds.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np

RECIPE = "fastconformer_hybrid_transducer_ctc_bpe_streaming.yaml"
VOCAB_SIZE = 1024
EMISSION_RATE = 0.25
CALIBRATION_S = 60.0  # seconds of (looped) bench audio the blank bias is calibrated on
LEFT_CONTEXT = 70
FRAME_MS = 80  # 8x subsampling of 10 ms features
CALIBRATION_SLICE = 25  # encoder frames (2 s) the RNNT calibration decodes before checking its count


def recipe_path(name: str = RECIPE) -> Path:
    """A recipe shipped with ouvir (``ouvir/models/recipes/``; sources: tests/fixtures/configs/README.md); by
    default this one, NeMo's example config from NVIDIA/NeMo at commit 8cfedd7 (Apache-2.0), the one the
    hybrid fixture was built from."""
    return Path(str(files("ouvir.models") / "recipes" / name))


def context_for(lookahead_ms: int) -> tuple[int, int]:
    """(70, r) with r * 80 ms == lookahead_ms; 70 % (r + 1) == 0 (NeMo's chunked_limited rule)."""
    r, rest = divmod(lookahead_ms, FRAME_MS)
    if rest or r < 0 or LEFT_CONTEXT % (r + 1):
        ok = [k * FRAME_MS for k in range(LEFT_CONTEXT) if LEFT_CONTEXT % (k + 1) == 0]
        raise ValueError(f"no [70, r] context has a {lookahead_ms} ms look-ahead; choose one of {ok}")
    return LEFT_CONTEXT, r


def pseudo_word_tokenizer(seed: int, vocab_size: int = VOCAB_SIZE) -> bytes:
    """A SentencePiece BPE model with exactly ``vocab_size`` pieces, trained on seeded pseudo-words."""
    from ouvir.models.tokenizer import Tokenizer
    from ouvir.models.train.tokenizer_train import train_tokenizer

    rng = np.random.default_rng(seed)
    syllables = [c + v + e for c in "bcdfghjklmnprstvwz" for v in "aeiou" for e in ("", "n", "r", "s", "t")]
    words = ["".join(rng.choice(syllables, rng.integers(1, 4))) for _ in range(30000)]
    model = train_tokenizer((" ".join(words[i : i + 10]) for i in range(0, len(words), 10)), vocab_size, seed)
    got = len(Tokenizer(model).pieces)
    if got != vocab_size:
        raise RuntimeError(f"the pseudo-word tokenizer has {got} pieces, not {vocab_size}")
    return model


def large_config(contexts: list[tuple[int, int]], vocabulary: tuple[str, ...]) -> Any:
    """The recipe's ``ModelConfig`` with ``contexts`` as its look-aheads (the first is the default)."""
    import yaml

    from ouvir.models.config import from_nemo

    cfg = yaml.safe_load(recipe_path().read_text())
    cfg["model"]["encoder"]["att_context_size"] = [list(c) for c in contexts]
    return from_nemo(cfg, vocabulary=list(vocabulary))


def solve_decreasing(fn: Callable[[float], float], target: float, iters: int = 8) -> float:
    """x >= 0 with fn(x) ~= target for a non-increasing fn: double until below, then bisect; returns the
    upper end (fn(x) <= target)."""
    lo, hi = 0.0, 1.0
    for _ in range(32):
        if fn(hi) <= target:
            break
        lo, hi = hi, 2 * hi
    else:
        raise RuntimeError(f"no shift up to {hi} brings the rate down to {target}")
    for _ in range(iters):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if fn(mid) > target else (lo, mid)
    return hi


def calibrate_blank(model: Any, features: np.ndarray, rate: float, contexts: list[tuple[int, int]]) -> dict[str, float]:
    """Raise both heads' blank bias so that greedy decoding of ``features`` (F, T) emits at most ``rate`` tokens
    per encoder frame under every ``att_context_size`` in ``contexts``; returns the shifts. A trial shift's RNNT
    decoding stops as soon as it has emitted too many (a random prediction network emits up to ``max_symbols``
    per frame: decoding 60 s of a 2-layer, 640-wide one in full took minutes per trial)."""
    import torch

    from ouvir.models.decoding import CTCState, ctc_greedy, rnnt_greedy, rnnt_initial_state

    with torch.inference_mode():
        x = torch.from_numpy(features)[None]  # (1, F, T)
        runs = [model.encoder(x, torch.tensor([x.shape[2]]), context=ctx) for ctx in contexts]  # (1, D, T'), (1,)
        blank = model.config.blank_id
        found: dict[str, float] = {}

        def shifted(bias: torch.Tensor, decode: Callable[..., int]) -> Callable[[float], float]:
            def tokens_per_frame(shift: float) -> float:
                bias[blank] += shift
                try:
                    return max(decode(encoded, lengths, rate * int(lengths[0])) / int(lengths[0])
                               for encoded, lengths in runs)
                finally:
                    bias[blank] -= shift
            return tokens_per_frame

        if model.ctc is not None:
            start = CTCState(torch.tensor([blank]), torch.zeros(1, dtype=torch.int64))

            def ctc_tokens(encoded: torch.Tensor, lengths: torch.Tensor, limit: float) -> int:
                return len(ctc_greedy(model.ctc(encoded), lengths, start)[0].tokens[0])

            found["ctc"] = solve_decreasing(shifted(model.ctc.conv.bias, ctc_tokens), rate)
            model.ctc.conv.bias[blank] += found["ctc"]
        if model.joint is not None:
            max_symbols = model.config.rnnt.max_symbols

            def rnnt_tokens(encoded: torch.Tensor, lengths: torch.Tensor, limit: float) -> int:
                """Tokens of greedy decoding, ``CALIBRATION_SLICE`` frames at a time (the state carried on, so
                the same tokens); stops once past ``limit``: only whether the count exceeds it matters."""
                state, count = rnnt_initial_state(model.predictor, model.joint, 1), 0
                for start in range(0, int(lengths[0]), CALIBRATION_SLICE):
                    piece = encoded[:, :, start : start + CALIBRATION_SLICE]  # (1, D, <= slice)
                    hyp, state = rnnt_greedy(model.predictor, model.joint, piece, torch.tensor([piece.shape[2]]),
                                             state, max_symbols)
                    count += len(hyp.tokens[0])
                    if count > limit:
                        break
                return count

            found["rnnt"] = solve_decreasing(shifted(model.joint.out.bias, rnnt_tokens), rate)
            model.joint.out.bias[blank] += found["rnnt"]
    return found


def build_large(path: Path, contexts: list[tuple[int, int]], seed: int, audio: np.ndarray,
                rate: float = EMISSION_RATE) -> dict[str, Any]:
    """Write the random-weight large model as an ouvir checkpoint at ``path``; returns what was built."""
    import torch

    from ouvir.engine.features import hann_window, log_mel, mel_filterbank
    from ouvir.models.asr import ASRModel, LoadedModel
    from ouvir.models.checkpoint import save_checkpoint
    from ouvir.models.tokenizer import Tokenizer

    tokenizer = pseudo_word_tokenizer(seed)
    cfg = large_config(contexts, Tokenizer(tokenizer).pieces)
    torch.manual_seed(seed)
    model = ASRModel(cfg).eval()
    window, fb = hann_window(cfg.features), mel_filterbank(cfg.features)
    biases = calibrate_blank(model, log_mel(audio, cfg.features, window, fb), rate, contexts)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(path, LoadedModel(model, cfg, tokenizer, window, fb))
    return {
        "recipe": RECIPE,
        "parameters": sum(p.numel() for p in model.parameters()),
        "att_context_size": [list(c) for c in contexts],
        "seed": seed,
        "vocabulary": VOCAB_SIZE,
        "emission_rate_target": rate,
        "calibration_s": len(audio) / cfg.features.sample_rate,
        "blank_bias_shift": biases,
    }
