"""The model ouvir ships: a small hybrid RNNT+CTC streaming FastConformer trained on synthetic speech
(models/train/), installed with the package as ``ouvir/default_model/``:

    model.ouvir     the checkpoint (torch backend, fp32; its weights stored as float16, the builds made from them)
    onnx-fp32/      bundle (onnxruntime)
    onnx-int8/      bundle (onnxruntime, int8)
    pte-int8/       bundle (ExecuTorch / XNNPACK, int8)
    samples/        held-out synthetic sample WAVs and samples.jsonl ({"file", "text"} per line)
    decoding.json   the decoding it is measured with: RNNT beam search fused with lm.npz and held to
                    lexicon.txt.gz (engine/beam.py)
    lm.npz          a token n-gram of the training sentences (engine/ngram.py)
    lexicon.txt.gz  the dictionary the training texts' words come from (engine/lexicon.py)

``ouvir listen`` / ``transcribe`` use it when neither ``--model`` nor $OUVIR_MODEL names another.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from ouvir.engine.beam import Decoding, load_decoding

# (backend, precision) -> file or folder inside default_model/. The first entry is the default.
SHIPPED = {
    ("onnx", "fp32"): "onnx-fp32",
    ("onnx", "int8"): "onnx-int8",
    ("pte", "int8"): "pte-int8",
    ("torch", "fp32"): "model.ouvir",
}


def root() -> Path:
    return Path(str(files("ouvir") / "default_model"))


def default_model(backend: str | None, precision: str | None) -> tuple[Path, str]:
    """The shipped file or bundle for ``backend`` and ``precision`` (None: any; the first shipped build that
    matches both), and the backend to run it."""
    match = [(b, p) for b, p in SHIPPED if backend in (None, b) and precision in (None, p)]
    if not match:
        have = ", ".join(f"--backend {b} --precision {p}" for b, p in SHIPPED)
        want = " ".join(x for x in (backend, precision) if x)
        raise ValueError(f"the default model ships no {want} build; it has: {have} "
                         f"(or export one: ouvir export {root() / 'model.ouvir'} -o DIR --format {backend or 'onnx'})")
    backend, precision = match[0]
    name = SHIPPED[(backend, precision)]
    path = root() / name
    if not path.exists():
        raise FileNotFoundError(f"no default model is installed at {path} (this build ships none yet, see the README): "
                                "pass --model a .nemo, an ouvir checkpoint or a bundle")
    return path, backend


def default_decoding() -> Decoding | None:
    """The shipped model's beam search, n-gram and lexicon (``decoding.json``), or None where it ships none."""
    path = root() / "decoding.json"
    return load_decoding(path) if path.is_file() else None


@dataclass(frozen=True)
class Sample:
    path: Path  # 16 kHz mono WAV
    text: str  # what it says (lower case, no punctuation: the training texts' form)


def samples() -> list[Sample]:
    """The shipped sample utterances, in ``samples.jsonl`` order."""
    folder = root() / "samples"
    index = folder / "samples.jsonl"
    if not index.is_file():
        raise FileNotFoundError(f"no default model samples are installed at {folder}")
    rows = [json.loads(line) for line in index.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [Sample(folder / r["file"], r["text"]) for r in rows]
