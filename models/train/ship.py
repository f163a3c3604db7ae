"""Package a trained checkpoint as ouvir's default model (``pkg/default_model/``, installed as
``ouvir/default_model/``; engine/default_model.py reads it):

    python -m ouvir.models.train.ship runs/small/best-step0004000.ouvir --data /work/data/synth_all \\
        --out pkg/default_model

writes ``model.ouvir`` (its weights stored as float16: the float32 model loads them, and every build is exported
from them, so all builds share exactly these weights), the ``onnx-fp32``, ``onnx-int8`` and ``pte-int8`` bundles
(int8: dynamic scales, with the accuracy report measured on ``--calibration`` held-out test utterances and their
texts; the bundles hold the default 480 ms look-ahead only, to stay within the 30 MB the repository allows the
model; `ouvir export` makes bundles of the others from `model.ouvir`, which has all four) and
``samples/`` (a few held-out test utterances, one per TTS engine, with ``samples.jsonl``). Only the test split
of ``--data`` is read: every sample and calibration utterance is a held-out voice and sentence. ``--decoding``
copies a ``decoding.json`` and the n-gram and lexicon it names (engine/beam.py) beside them: the decoding the
CLI uses for the default model.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from ouvir.engine.beam import load_decoding
from ouvir.engine.default_model import SHIPPED
from ouvir.export.bundle import export_bundle
from ouvir.models.checkpoint import load_checkpoint, save_checkpoint

LOOKAHEADS_MS = (480,)  # the default: with 480 + 80 ms the four builds measured 32.7 MB, over the 30 MB allowed
BUILDS = {name: (backend, precision) for (backend, precision), name in SHIPPED.items() if backend != "torch"}


def _test_rows(data: Path) -> list[dict[str, Any]]:
    manifest = data / "test.jsonl"
    rows = [json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines() if line.strip()]
    for r in rows:
        r["path"] = (manifest.parent / r["audio_filepath"]).resolve()
    return rows


def pick_samples(rows: list[dict[str, Any]], count: int, min_s: float = 2.5, max_s: float = 6.0
                 ) -> list[dict[str, Any]]:
    """``count`` utterances of ``min_s``..``max_s`` seconds, cycling through the TTS engines in turn."""
    fitting = [r for r in rows if min_s <= r["duration"] <= max_s and len(r["text"].split()) >= 4]
    engines = sorted({r.get("engine", "") for r in fitting})
    queues = {e: [r for r in fitting if r.get("engine", "") == e] for e in engines}
    chosen: list[dict[str, Any]] = []
    while len(chosen) < count and any(queues.values()):
        for e in engines:
            if queues[e] and len(chosen) < count:
                chosen.append(queues[e].pop(0))
    return chosen


def ship_decoding(decoding: Path, out: Path) -> None:
    """Copy ``decoding.json`` and the files it names into ``out`` (checked by loading them first)."""
    load_decoding(decoding)
    spec = json.loads(decoding.read_text(encoding="utf-8"))
    for key in ("lm", "lexicon"):
        if spec.get(key):
            shutil.copyfile(decoding.parent / spec[key], out / spec[key])
    shutil.copyfile(decoding, out / "decoding.json")


def ship(checkpoint: Path, data: Path, out: Path, samples: int, calibration: int, lookaheads: list[int],
         progress: bool = True, decoding: Path | None = None) -> None:
    loaded = load_checkpoint(checkpoint)  # refuse a broken checkpoint before anything is written
    out.mkdir(parents=True, exist_ok=True)
    if decoding is not None:
        ship_decoding(decoding, out)
    shipped = out / SHIPPED[("torch", "fp32")]
    save_checkpoint(shipped, loaded, half=True)  # every build below has these same weights
    rows = _test_rows(data)
    sample_rows = pick_samples(rows, samples)
    sample_dir = out / "samples"
    shutil.rmtree(sample_dir, ignore_errors=True)
    sample_dir.mkdir()
    lines = []
    for i, r in enumerate(sample_rows):
        name = f"{i:02d}-{r.get('engine', 'tts')}.wav"
        shutil.copyfile(r["path"], sample_dir / name)
        lines.append(json.dumps({"file": name, "text": r["text"], "voice": r.get("voice", "")}) + "\n")
    (sample_dir / "samples.jsonl").write_text("".join(lines), encoding="utf-8")
    step = max(len(rows) // calibration, 1)
    calib = rows[::step][:calibration]
    for name, (backend, precision) in BUILDS.items():
        quantize = "int8" if precision == "int8" else "none"
        export_bundle(shipped, out / name, backend, quantize, [r["path"] for r in calib], lookaheads,
                      references=[r["text"] for r in calib], force=True, progress=progress)
        print(f"{out / name}: done", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m ouvir.models.train.ship", description=__doc__.split("\n")[0])
    p.add_argument("checkpoint", type=Path, help="the trained ouvir checkpoint")
    p.add_argument("--data", type=Path, required=True, help="data folder with test.jsonl (held-out WAVs)")
    p.add_argument("--out", type=Path, required=True, help="default model folder to (re)write")
    p.add_argument("--samples", type=int, default=3)
    p.add_argument("--calibration", type=int, default=20, help="test utterances for the int8 reports")
    p.add_argument("--lookahead-ms", type=int, nargs="+", default=list(LOOKAHEADS_MS),
                   help="look-aheads in the bundles (the checkpoint keeps all); the first is the default")
    p.add_argument("--decoding", type=Path, default=None, help="a decoding.json to ship with it (and its files)")
    p.add_argument("--quiet", action="store_true")
    a = p.parse_args(argv)
    ship(a.checkpoint, a.data, a.out, a.samples, a.calibration, a.lookahead_ms, not a.quiet, a.decoding)


if __name__ == "__main__":
    main()
