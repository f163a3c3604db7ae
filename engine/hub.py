"""Published NVIDIA streaming checkpoints by name, and the local store of the ones pulled (numpy only).

    ouvir models list                                   the registry below, and what is pulled
    ouvir models pull NAME [--format onnx|pte] [--quantize int8]
    ouvir transcribe --model NAME FILE                  (--model NAME works wherever --model does)

``ouvir models pull`` (engine/models_cli.py) downloads the checkpoint once (engine/hub_download.py: the Hugging
Face cache, resumable, sha256-checked) and exports it once into a bundle in the store:

    $OUVIR_HOME/models/NAME/source.json                 where it came from: repo, revision, commit, file, sha256
    $OUVIR_HOME/models/NAME/<format>-<precision>/       a bundle (manifest.json ...), e.g. onnx-fp32, pte-int8

``$OUVIR_HOME`` defaults to ``$XDG_CACHE_HOME/ouvir`` (``~/.cache/ouvir``). A model path that does not exist
is looked up here by name (``open_backend``): the pulled build matching --backend / --precision, the first of
``BUILD_ORDER`` otherwise; ``--backend torch`` runs the downloaded .nemo itself.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HOME_ENV = "OUVIR_HOME"
SOURCE = "source.json"
BUILD_ORDER = (("onnx", "fp32"), ("onnx", "int8"), ("pte", "int8"), ("pte", "fp32"))


@dataclass(frozen=True)
class HubModel:
    """One published checkpoint: on the Hugging Face hub (``repo_id``) or only on NGC (``ngc``)."""

    name: str
    filename: str  # the .nemo file in the repo
    what: str  # one line: architecture, size, look-aheads, output
    repo_id: str | None = None  # Hugging Face repo, e.g. "nvidia/parakeet_realtime_eou_120m-v1"
    ngc: str | None = None  # NGC model path "org/team/model/versions/V" (models NeMo lists on NGC only)
    revision: str = "main"  # hub revision (branch, tag or commit)
    sha256: str | None = None  # a known digest of the file, checked besides the hub's own metadata

    @property
    def source(self) -> str:
        return f"hf:{self.repo_id}" if self.repo_id else f"ngc:{self.ngc}"


def _hf(name: str, what: str) -> HubModel:
    return HubModel(name, f"{name}.nemo", what, repo_id=f"nvidia/{name}")


def _ngc(name: str, what: str) -> HubModel:
    return HubModel(name, f"{name}.nemo", what, ngc=f"nvidia/nemo/{name}/versions/1.20.0")


# Sources: the Hugging Face model cards of each repo; NeMo's EncDecHybridRNNTCTCBPEModel.list_available_models()
# for the NGC-only 80/480/1040 ms models (NVIDIA/NeMo nemo/collections/asr/models/hybrid_rnnt_ctc_bpe_models.py).
REGISTRY: dict[str, HubModel] = {m.name: m for m in (
    _hf("stt_en_fastconformer_hybrid_large_streaming_multi",
        "114M FastConformer hybrid RNNT+CTC, look-aheads 0 / 80 / 480 / 1040 ms, lower-case English"),
    _ngc("stt_en_fastconformer_hybrid_large_streaming_80ms", "114M FastConformer hybrid RNNT+CTC, 80 ms look-ahead"),
    _ngc("stt_en_fastconformer_hybrid_large_streaming_480ms",
         "114M FastConformer hybrid RNNT+CTC, 480 ms look-ahead"),
    _ngc("stt_en_fastconformer_hybrid_large_streaming_1040ms",
         "114M FastConformer hybrid RNNT+CTC, 1040 ms look-ahead"),
    _hf("stt_en_fastconformer_hybrid_medium_streaming_80ms", "32M FastConformer hybrid RNNT+CTC, 80 ms look-ahead"),
    _hf("stt_en_fastconformer_hybrid_medium_streaming_80ms_pc",
        "32M FastConformer hybrid RNNT+CTC, 80 ms look-ahead, punctuation and capitalization"),
    _hf("nemotron-speech-streaming-en-0.6b",
        "600M FastConformer RNNT, 128 mels, chunks of 80 / 160 / 560 / 1120 ms, punctuation and capitalization"),
    _hf("parakeet_realtime_eou_120m-v1",
        "120M FastConformer RNNT, 80 ms look-ahead, <EOU> end-of-utterance token (an endpoint, not text)"),
)}


def lookup(name: str) -> HubModel:
    """The registry entry for ``name`` (or its hub id ``nvidia/NAME``); a ValueError listing the names if none."""
    entry = REGISTRY.get(name.removeprefix("nvidia/"))
    if entry is None:
        raise ValueError(f"no published model is named {name!r}; `ouvir models list` shows: {', '.join(REGISTRY)}")
    return entry


def home() -> Path:
    if os.environ.get(HOME_ENV):
        return Path(os.environ[HOME_ENV])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ouvir"


def store(name: str) -> Path:
    """Where ``name``'s pulled builds live."""
    return home() / "models" / lookup(name).name


def build_dir(name: str, fmt: str, precision: str) -> Path:
    return store(name) / f"{fmt}-{precision}"


def builds(name: str) -> list[tuple[str, str]]:
    """The (format, precision) builds of ``name`` in the store, in ``BUILD_ORDER``."""
    root = store(name)
    return [b for b in BUILD_ORDER if (root / f"{b[0]}-{b[1]}" / "manifest.json").is_file()]


def read_source(name: str) -> dict[str, Any] | None:
    path = store(name) / SOURCE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def write_source(name: str, source: dict[str, Any]) -> None:
    path = store(name) / SOURCE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(source, indent=1) + "\n", encoding="utf-8")
    tmp.replace(path)


def pulled_model(name: str, backend: str | None, precision: str | None) -> tuple[Path, str]:
    """The pulled build of ``name`` for ``backend`` / ``precision`` (None: any) and its backend; ``torch`` is
    the downloaded checkpoint. FileNotFoundError saying what to pull when there is none."""
    if name.removeprefix("nvidia/") not in REGISTRY:
        raise FileNotFoundError(f"model {name} does not exist: it is neither a file, a bundle directory nor a "
                                f"published model name (`ouvir models list`: {', '.join(REGISTRY)})")
    if backend == "torch":
        source = read_source(name)
        checkpoint = Path(source["checkpoint"]) if source else None
        if checkpoint is None or not checkpoint.is_file():
            raise FileNotFoundError(f"{name}: no downloaded checkpoint for the torch backend (`ouvir models pull "
                                    f"{name}` downloads it again)")
        return checkpoint, "torch"
    have = builds(name)
    match = [b for b in have if backend in (None, b[0]) and precision in (None, b[1])]
    if not match:
        want = " ".join(x for x in (backend, precision) if x)
        pulled = f"it has {', '.join(f'{f} {p}' for f, p in have)}" if have else "nothing is pulled yet"
        fmt = f" --format {backend}" if backend else ""
        quant = " --quantize int8" if precision == "int8" else ""
        raise FileNotFoundError(f"{name}: no pulled {want + ' ' if want else ''}build in {store(name)} ({pulled}): "
                                f"run `ouvir models pull {name}{fmt}{quant}`")
    fmt, prec = match[0]
    return build_dir(name, fmt, prec), fmt
