"""The shipped default model: installed with the package, within 30 MB, every build verified, the same words
from the torch checkpoint and its ONNX fp32 export, int8 builds close to them, and ``ouvir demo``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ouvir.engine.bundle import load_bundle
from ouvir.engine.default_model import SHIPPED, default_decoding, default_model, root, samples
from ouvir.engine.recognizer import Recognizer
from ouvir.models.train.evaluate import load_audio, streaming_texts
from ouvir.models.train.wer import word_error_rate

pytest.importorskip("torch")
pytestmark = pytest.mark.usefixtures("one_torch_thread")
OUVIR = Path(sys.executable).with_name("ouvir")
MAX_BYTES = 30_000_000  # the "<= 30 MB in all"
# Regression guards at the shipped model's measured level (README, "The default model"; 36.9 % WER on the
# held-out test set with its decoding, 46.1 % greedy): every build 11.8 % WER on the three samples with the shipped
# decoding (2 of their 17 words; greedy 29.4 %; the models before: 35.3 %, 23.5 %: on 17 words that is noise, the
# 300-utterance held-out set decides), and sherpa-onnx's greedy text (its own fbank and chunk grid, Kaldi framing
# half a hop, 80 samples, after ouvir's) within the bound below of ouvir's greedy words. The goal is 10 %
# WER; a better model tightens these.
MAX_SAMPLE_WER = 0.20
MAX_GREEDY_SAMPLE_WER = 0.40  # greedy decoding, ouvir's and sherpa-onnx's
# Word edits between sherpa-onnx's and ouvir's greedy text, per ouvir word (27.8 % measured with the model before).
# This weak model flips words on half a hop of framing; sherpa-onnx's own texts are checked against the references
# too, so a broken contract (garbage) still fails.
MAX_SHERPA_DISAGREEMENT = 0.30


@pytest.fixture(scope="module")
def texts() -> dict[tuple[str, str], list[str]]:
    """Every build's texts of the samples with the shipped decoding (beam search, n-gram, lexicon)."""
    decoding = default_decoding()
    assert decoding is not None and decoding.lm is not None and decoding.lexicon is not None
    out = {}
    for backend, precision in SHIPPED:
        path, backend_name = default_model(backend, precision)
        rec = Recognizer.open(path, backend_name, precision, search=decoding.search, lm=decoding.lm,
                              lexicon=decoding.lexicon)
        out[(backend, precision)] = streaming_texts(rec, [load_audio(str(s.path)) for s in samples()])
    return out


@pytest.fixture(scope="module")
def greedy() -> list[str]:
    """The ONNX fp32 build's greedy texts (what sherpa-onnx's greedy_search is compared with)."""
    path, backend = default_model("onnx", "fp32")
    return streaming_texts(Recognizer.open(path, backend), [load_audio(str(s.path)) for s in samples()])


def test_every_build_is_installed_and_within_30_mb() -> None:
    files = [p for p in root().rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    assert sum(p.stat().st_size for p in files) <= MAX_BYTES
    for name in SHIPPED.values():
        assert (root() / name).exists(), name
    for name in ("onnx-fp32", "onnx-int8", "pte-int8"):
        bundle = load_bundle(root() / name)  # sha256 of every file checked
        assert list(bundle.lookaheads) == ["70_6"]  # 480 ms, the default (the 30 MB budget)
    assert len(samples()) >= 3 and all(s.path.is_file() and len(s.text.split()) >= 4 for s in samples())


def test_a_missing_build_is_named_with_the_ones_shipped() -> None:
    with pytest.raises(ValueError, match="--backend onnx --precision int8"):
        default_model("pte", "fp32")


def test_the_builds_recognize_the_samples(texts) -> None:
    refs = [s.text for s in samples()]
    assert texts[("onnx", "fp32")] == texts[("torch", "fp32")]  # the export changes nothing
    for build, hyps in texts.items():
        assert word_error_rate(refs, hyps) <= MAX_SAMPLE_WER, (build, hyps)


def test_ouvir_demo_prints_each_sample_and_the_wer(texts) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([str(OUVIR), "demo", "--fast"], capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr
    search = default_decoding().search
    assert (f"onnx backend, rnnt decoder (beam {search.beam} + n-gram x {search.lm_weight:g} + lexicon), "
            "look-ahead 480 ms") in out.stderr
    for sample, hyp in zip(samples(), texts[("onnx", "fp32")], strict=True):
        assert f"{sample.path.name}:\n" in out.stdout
        assert f"  expected: {sample.text}\n  WER {100 * word_error_rate([sample.text], [hyp]):.1f} %\n" in out.stdout
        assert hyp in out.stdout
    refs = [s.text for s in samples()]
    assert f"WER {100 * word_error_rate(refs, texts[('onnx', 'fp32')]):.1f} % over {len(refs)} samples" in out.stdout


def test_beam_zero_on_the_command_line_is_greedy(greedy, texts) -> None:
    """On a sample where the shipped decoding and greedy decoding differ, the CLI gives each as asked."""
    i = next(i for i, (a, b) in enumerate(zip(greedy, texts[("onnx", "fp32")], strict=True)) if a != b)
    args = [str(OUVIR), "transcribe", str(samples()[i].path)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    plain = subprocess.run([*args, "--beam", "0"], capture_output=True, text=True, timeout=120, env=env)
    shipped = subprocess.run(args, capture_output=True, text=True, timeout=120, env=env)
    assert plain.returncode == shipped.returncode == 0, (plain.stderr, shipped.stderr)
    assert plain.stdout.split() == greedy[i].split()
    assert shipped.stdout.split() == texts[("onnx", "fp32")][i].split()


def test_sherpa_onnx_reads_the_default_model_and_agrees_with_ouvir(greedy) -> None:
    """sherpa-onnx runs the shipped ONNX files unchanged (its own fbank and chunking); words compared to ouvir's."""
    sherpa_onnx = pytest.importorskip("sherpa_onnx")
    from tests.export.test_sherpa_contract import sherpa_text

    path = root() / "onnx-fp32"
    bundle = load_bundle(path)
    la = next(iter(bundle.lookaheads.values()))  # 480 ms, the default
    heads = bundle.heads
    rec = sherpa_onnx.OnlineRecognizer.from_transducer(
        encoder=str(path / la.encoder_next.file), decoder=str(path / heads["rnnt_decoder"].file),
        joiner=str(path / heads["rnnt_joint"].file), tokens=str(path / "tokens.txt"), decoding_method="greedy_search")
    theirs = [sherpa_text(rec, s.path) for s in samples()]
    assert word_error_rate(greedy, theirs) <= MAX_SHERPA_DISAGREEMENT, theirs
    assert word_error_rate([s.text for s in samples()], theirs) <= MAX_GREEDY_SAMPLE_WER, theirs
    assert word_error_rate([s.text for s in samples()], greedy) <= MAX_GREEDY_SAMPLE_WER, greedy
