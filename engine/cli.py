"""The ``ouvir`` command: transcribe files, listen to a microphone, list input devices, verify a bundle.

    ouvir demo [model options] [--fast]     (the default model's bundled samples, live captions, WER)
    ouvir transcribe FILE... [--model M] [--backend torch|onnx|pte] [--precision fp32|int8]
                             [--lookahead-ms N] [--decoder rnnt|ctc] [--realtime] [--channel N]
                             [--format txt|json|srt|vtt]
    ouvir transcribe - --raw-format s16le --rate 48000 --channels 2     (raw PCM on stdin)
    ouvir listen [model options] [--input-backend sounddevice|pyaudio] [--device D] [--save-audio FILE]
    ouvir devices [--input-backend sounddevice|pyaudio]
    ouvir verify BUNDLE
    ouvir models list | pull NAME [--format onnx|pte] [--quantize int8]   (then --model NAME; engine/hub.py)
    ouvir completion bash|zsh               (source <(ouvir completion bash))
    ouvir --version

Output (``--format``): finals on their own lines, and on a terminal the open segment's partial text rewritten
in place (txt); every event as one JSON line (json, also ``--json``); finals as SubRip / WebVTT cues (srt, vtt).
A bundle runs as what it holds (its backend and precision); the options only choose among the default model's
builds or check a bundle. Ctrl-C stops reading input and prints the final result of
the audio already taken in (a second Ctrl-C aborts). ``--model`` defaults to $OUVIR_MODEL.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from importlib.metadata import version
from pathlib import Path
from typing import TextIO

from ouvir.engine.audio.sources import AudioSource
from ouvir.engine.audio.writer import audio_writer
from ouvir.engine.backends import BACKENDS, PRECISIONS
from ouvir.engine.beam import BeamSearch, describe
from ouvir.engine.bench.cli import add_bench_parser
from ouvir.engine.bench.host import add_bench_host_parser
from ouvir.engine.bundle import BundleError, add_verify_parser
from ouvir.engine.completion import SHELLS, script
from ouvir.engine.default_model import default_decoding, default_model
from ouvir.engine.errors import EngineError
from ouvir.engine.events import Event, Final, Overload, Partial, event_to_dict
from ouvir.engine.lexicon import Lexicon
from ouvir.engine.loop import LoopConfig, PacedSource, RealtimeLoop
from ouvir.engine.models_cli import add_models_parser
from ouvir.engine.ngram import NgramLM
from ouvir.engine.recognizer import Recognizer
from ouvir.engine.subtitles import SUBTITLE_FORMATS, SubtitleWriter
from ouvir.export.cli import add_export_parser

MODEL_ENV = "OUVIR_MODEL"
FORMATS = ("txt", "json", *SUBTITLE_FORMATS)
INPUT_BACKENDS = ("sounddevice", "pyaudio")


class Printer:
    """Writes events as ``fmt``: "txt" finals as lines (on a TTY the open segment's partial is rewritten in
    place), "json" every event as a JSON line, "srt" / "vtt" finals as subtitle cues."""

    def __init__(self, out: TextIO, fmt: str = "txt", label: str | None = None) -> None:
        self.out = out
        self.fmt = fmt
        self.tty = out.isatty() and fmt == "txt"
        self.label = label  # prefix (file name) when several inputs share the output
        self.subtitles = SubtitleWriter(out, fmt) if fmt in SUBTITLE_FORMATS else None
        self._partial = False

    def __call__(self, event: Event) -> None:
        if isinstance(event, Overload):
            print(f"ouvir: falling behind: dropped {event.dropped_s:.2f} s of audio "
                  f"({event.dropped_total_s:.2f} s in all)", file=sys.stderr)
        if self.fmt == "json":
            record = event_to_dict(event)
            if self.label is not None:
                record["file"] = self.label
            self.out.write(json.dumps(record, ensure_ascii=False) + "\n")
        elif self.subtitles is not None:
            if isinstance(event, Final):
                self.subtitles.write(event)
        elif isinstance(event, Final):
            self.out.write(("\r\x1b[K" if self._partial else "") + self._labelled(event.text) + "\n")
            self._partial = False
        elif isinstance(event, Partial) and self.tty:
            self.out.write("\r\x1b[K" + self._labelled(event.text))
            self._partial = True
        self.out.flush()

    def _labelled(self, text: str) -> str:
        return text if self.label is None else f"{self.label}: {text}"


@contextmanager
def interrupt_stops(stop: Callable[[], None]) -> Iterator[None]:
    """The first Ctrl-C calls ``stop`` (finish cleanly); the next one raises KeyboardInterrupt."""
    def first(signum: int, frame: object) -> None:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        stop()

    previous = signal.signal(signal.SIGINT, first)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def open_recognizer(args: argparse.Namespace) -> Recognizer:
    """--model (or $OUVIR_MODEL); without one, the shipped default model's build for --backend/--precision and
    its decoding (beam search, n-gram, lexicon), which --beam / --lm / --lexicon / ... override."""
    model, backend = args.model, args.backend
    search, lm, lexicon = None, None, None
    if model is None:
        model, backend = default_model(backend, args.precision)
        if args.decoder in (None, "rnnt") and (shipped := default_decoding()) is not None:
            search, lm, lexicon = shipped
    lm = NgramLM.load(args.lm) if args.lm is not None else lm
    lexicon = Lexicon.load(args.lexicon) if args.lexicon is not None else lexicon
    given = {k: v for k in ("lm_weight", "token_bonus", "oov_penalty") if (v := getattr(args, k)) is not None}
    if args.beam == 0:
        search = None
    elif args.beam is not None or given or args.lm is not None or args.lexicon is not None:
        search = replace(search or BeamSearch(), **given, **({"beam": args.beam} if args.beam else {}))
    if search is None:
        lm, lexicon = None, None
    return Recognizer.open(model, backend, args.precision, args.lookahead_ms, args.decoder, search=search, lm=lm,
                           lexicon=lexicon)


def _open_input(path: Path, args: argparse.Namespace) -> AudioSource:
    """A file, or headerless PCM on stdin for ``-``; either is converted to 16 kHz mono once, here."""
    from ouvir.engine.audio import FileSource, RawSource

    if str(path) == "-":
        return RawSource(sys.stdin.buffer, args.raw_format, args.rate, args.channels, args.channel, name="stdin")
    return FileSource(path, channel=args.channel)


def transcribe(args: argparse.Namespace) -> int:
    if args.format in SUBTITLE_FORMATS and len(args.files) > 1:
        raise ValueError(f"--format {args.format} writes one file's subtitles: give one input at a time")
    rec = open_recognizer(args)
    stop = threading.Event()
    with interrupt_stops(stop.set):
        for path in args.files:
            if stop.is_set():
                break  # Ctrl-C: later files are skipped
            show = Printer(sys.stdout, args.format, str(path) if len(args.files) > 1 else None)
            with _open_input(path, args) as source:
                if source.conversion.resampled or source.conversion.channels > 1:
                    print(source.conversion.describe(), file=sys.stderr)
                for event in _events(rec, source, args.realtime, stop):
                    show(event)
    return 0


def demo(args: argparse.Namespace) -> int:
    """The README's first command: the shipped samples through the default model, captions as they come."""
    from ouvir.engine.default_model import samples
    from ouvir.models.train.wer import word_error_rate

    rec = open_recognizer(args)
    decoding = describe(rec.search, rec.lm, rec.spelling)
    print(f"ouvir demo: {rec.backend.name} backend, {rec.decoder} decoder{decoding}, "
          f"look-ahead {rec.info.lookahead_ms} ms{', real time' if args.realtime else ''}", file=sys.stderr)
    refs, hyps = [], []
    stop = threading.Event()
    with interrupt_stops(stop.set):
        for sample in samples():
            if stop.is_set():
                break
            print(f"{sample.path.name}:")
            show = Printer(sys.stdout)
            finals = []
            with _open_input(sample.path, args) as source:
                for event in _events(rec, source, args.realtime, stop):
                    show(event)
                    if isinstance(event, Final):
                        finals.append(event.text)
            refs.append(sample.text)
            hyps.append(" ".join(t for t in finals if t))
            print(f"  expected: {sample.text}")
            print(f"  WER {100 * word_error_rate(refs[-1:], hyps[-1:]):.1f} %")
    if refs:
        print(f"WER {100 * word_error_rate(refs, hyps):.1f} % over {len(refs)} samples")
    return 0


def _events(rec: Recognizer, source: AudioSource, realtime: bool, stop: threading.Event) -> Iterator[Event]:
    """A file's events: paced like a microphone through the real-time loop, or as fast as the machine goes."""
    return RealtimeLoop(rec, PacedSource(source), stop=stop).run() if realtime else _decode_source(rec, source, stop)


def _decode_source(rec: Recognizer, source: AudioSource, stop: threading.Event) -> Iterator[Event]:
    """As fast as the machine goes: every block, then the end of input."""
    stream = rec.create_stream()
    while not stop.is_set() and (block := source.read()) is not None:
        stream.accept_waveform(block, rec.info.features.sample_rate)
        yield from rec.decode(stream)
    stream.input_finished()
    yield from rec.decode(stream)


def listen(args: argparse.Namespace) -> int:
    from ouvir.engine.audio import MicSource

    rec = open_recognizer(args)
    device = int(args.device) if args.device is not None and args.device.isdigit() else args.device
    show = Printer(sys.stdout, args.format)
    mic = MicSource(device, backend=args.input_backend, rate=args.device_rate)
    with mic, audio_writer(args.save_audio) as save:
        print(f"listening: {mic.conversion.describe()} (Ctrl-C to stop)", file=sys.stderr)
        loop = RealtimeLoop(rec, mic, LoopConfig(max_lag_s=args.max_lag_s), on_capture=save)
        with interrupt_stops(loop.stop):
            for event in loop.run():
                show(event)
    return 0


def devices(args: argparse.Namespace) -> int:
    from ouvir.engine.audio import list_input_devices

    found = list_input_devices(args.input_backend)
    for d in found:
        print(f"{d.index}: {d.name} ({d.max_input_channels} ch, {d.default_samplerate:g} Hz)")
    if not found:
        print(f"no input devices ({args.input_backend})", file=sys.stderr)
    return 0


def completion(args: argparse.Namespace) -> int:
    sys.stdout.write(script(build_parser(), args.shell))
    return 0


def _model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", type=Path, default=os.environ.get(MODEL_ENV),
                   help=f"a .nemo / ouvir checkpoint (torch), a bundle directory or a pulled model's name (ouvir "
                        f"models list) (default ${MODEL_ENV}, else the shipped default model)")
    p.add_argument("--backend", choices=sorted(BACKENDS), default=None,
                   help="default: torch for a checkpoint file, the bundle's own for a directory")
    p.add_argument("--precision", choices=PRECISIONS, default=None,
                   help="default: what the model holds (a bundle's own; fp32 for a checkpoint; the default "
                        "model's fp32 build)")
    p.add_argument("--lookahead-ms", type=int, default=None, help="attention look-ahead (default: the model's)")
    p.add_argument("--decoder", choices=("rnnt", "ctc"), default=None, help="default: rnnt when the model has it")
    p.add_argument("--beam", type=int, default=None,
                   help="RNNT beam search of this width, 0: greedy (default: the default model's decoding.json, "
                        "greedy for other models)")
    p.add_argument("--lm", type=Path, default=None, help="a token n-gram (.npz, python -m ouvir.models.train.lm) "
                                                        "fused into the beam search")
    p.add_argument("--lm-weight", type=float, default=None, help="the n-gram's scale in the fused score")
    p.add_argument("--token-bonus", type=float, default=None, help="added to the score per emitted token")
    p.add_argument("--lexicon", type=Path, default=None, help="a word list (gzip text) the hypotheses are held to")
    p.add_argument("--oov-penalty", type=float, default=None, help="the score a word that leaves the lexicon loses")


def _output_options(p: argparse.ArgumentParser) -> None:
    out = p.add_mutually_exclusive_group()
    out.add_argument("--format", choices=FORMATS, default="txt",
                     help="txt: finals as lines (partials rewritten in place on a terminal); json: one JSON line "
                          "per event (partials and finals, token times); srt / vtt: finals as subtitle cues")
    out.add_argument("--json", dest="format", action="store_const", const="json", help="same as --format json")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ouvir", description="on-device streaming speech recognition")
    parser.add_argument("--version", action="version", version=f"%(prog)s {version('ouvir')}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("transcribe", help="transcribe audio files")
    p.add_argument("files", nargs="+", type=Path)
    _model_options(p)
    _output_options(p)
    p.add_argument("--realtime", action="store_true", help="feed each file at real-time pace, like a microphone")
    p.add_argument("--channel", type=int, default=None, help="use this channel (0-based) instead of the downmix")
    p.add_argument("--raw-format", default="s16le", choices=("u8", "s8le", "s16le", "s24le", "s32le", "f32le", "f64le"),
                   help="sample format of raw PCM on stdin (FILE '-')")
    p.add_argument("--rate", type=int, default=16000, help="sample rate of raw PCM on stdin")
    p.add_argument("--channels", type=int, default=1, help="channel count of raw PCM on stdin")
    p.set_defaults(func=transcribe)
    p = sub.add_parser("demo", help="the default model's bundled samples, captioned live")
    _model_options(p)
    p.add_argument("--fast", dest="realtime", action="store_false", help="as fast as possible, not in real time")
    p.set_defaults(func=demo, channel=None)
    p = sub.add_parser("listen", help="transcribe the microphone live")
    _model_options(p)
    _output_options(p)
    p.add_argument("--input-backend", choices=INPUT_BACKENDS, default="sounddevice")
    p.add_argument("--device", default=None, help="input device index or name (default: the system's)")
    p.add_argument("--device-rate", type=int, default=None,
                   help="capture rate in Hz (default: 16000 when the device takes it, else its own rate)")
    p.add_argument("--save-audio", type=Path, default=None, help="also write the captured audio to this WAV")
    p.add_argument("--max-lag-s", type=float, default=LoopConfig.max_lag_s,
                   help="drop the oldest audio when decoding falls further behind than this")
    p.set_defaults(func=listen)
    p = sub.add_parser("devices", help="list audio input devices")
    p.add_argument("--input-backend", choices=INPUT_BACKENDS, default="sounddevice")
    p.set_defaults(func=devices)
    add_export_parser(sub)
    add_verify_parser(sub)
    add_models_parser(sub)
    add_bench_parser(sub)
    add_bench_host_parser(sub)
    p = sub.add_parser("completion", help="print a shell completion script: source <(ouvir completion bash)")
    p.add_argument("shell", choices=SHELLS)
    p.set_defaults(func=completion)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (EngineError, BundleError, ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"ouvir: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # a second Ctrl-C, or one before any audio was taken in
        print("ouvir: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (e.g. `| head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":  # python -m ouvir.engine.cli (same as the `ouvir` console script)
    sys.exit(main())
