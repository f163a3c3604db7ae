"""ouvir-host: the torch-free device daemon. Verifies a bundle, captures audio, serves captions.

    ouvir-host BUNDLE [--input mic|file|stdin] [--input-backend sounddevice|pyaudio] [--device D]
                      [--serve HOST:PORT] [--jsonl] [--lookahead-ms N] [--token T] [--save-audio FILE]
    ouvir-host BUNDLE --input clients --serve HOST:PORT [--token T] [--max-clients N] [--max-per-address N]
                      (clients send their own audio over the WebSocket and get its captions: audio_server.py)

Exit codes: 0 done (input ended, or SIGTERM / SIGINT after flushing the last final), 1 the input failed
(e.g. an unreadable file), 2 usage or unsafe configuration (or an unwritable --save-audio file), 3 the bundle
was refused (tampered, incomplete, or a format this host does not run), 4 the server could not bind.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np

from ouvir.engine.audio.writer import audio_writer
from ouvir.engine.beam import load_decoding
from ouvir.engine.bundle import Bundle, BundleError, load_bundle
from ouvir.engine.errors import EngineError
from ouvir.engine.loop import LoopConfig
from ouvir.engine.recognizer import Recognizer
from ouvir.firmware_host import access, schema
from ouvir.firmware_host.access import AccessConfigError, AudioLimits, ServerConfig
from ouvir.firmware_host.monitor import HostMonitor
from ouvir.firmware_host.session import INPUTS, MIC_BACKENDS, HostSession, InputConfig, StoppableReader, open_source
from ouvir.firmware_host.supervisor import BackoffConfig, JsonlSink, Outputs, Supervisor

log = logging.getLogger("ouvir.host")

EXIT_OK, EXIT_INPUT, EXIT_USAGE, EXIT_BUNDLE, EXIT_BIND = 0, 1, 2, 3, 4
HOST_BACKENDS = ("onnx",)  # bundle backends this torch-free host runs (see deploy/README.md, ".pte bundles")
TOKEN_ENV = "OUVIR_HOST_TOKEN"
CLIENTS = "clients"  # --input clients: the audio server


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ouvir-host", description=__doc__.split("\n\n")[0],
        epilog="Protocol and deployment: firmware_host/README.md and firmware_host/deploy/README.md.")
    p.add_argument("bundle", type=Path, help="bundle directory (manifest.json + graphs), verified at start")
    g = p.add_argument_group("input")
    g.add_argument("--input", choices=(*INPUTS, CLIENTS), default="mic",
                   help=f"{CLIENTS}: WebSocket clients send audio (needs --serve); each gets its own captions")
    g.add_argument("--file", type=Path, help="audio file for --input file (played at real-time pace, like a mic)")
    g.add_argument("--input-backend", choices=MIC_BACKENDS, default="sounddevice")
    g.add_argument("--device", help="microphone: index or name substring (default: the default input)")
    g.add_argument("--channel", type=int, help="keep this channel (0-based) instead of the mean of all")
    g.add_argument("--raw-format", default="s16le", help="--input stdin: PCM format (s16le, s24le, s32le, f32le)")
    g.add_argument("--raw-rate", type=int, default=16000, help="--input stdin: sample rate")
    g.add_argument("--raw-channels", type=int, default=1, help="--input stdin: interleaved channels")
    g.add_argument("--save-audio", type=Path, metavar="FILE",
                   help="also write the audio the recognizer is given (16 kHz mono float WAV, 230 MB an hour; "
                        "for debugging: `ouvir transcribe --model BUNDLE FILE` repeats the decode)")
    g = p.add_argument_group("model")
    g.add_argument("--lookahead-ms", type=int, help="one of the bundle's look-aheads (default: the bundle's)")
    g.add_argument("--decoder", choices=("rnnt", "ctc"), help="default: the bundle's first")
    g.add_argument("--decoding", type=Path, default=None,
                   help="a decoding.json: RNNT beam search and its n-gram (the default model has one); default greedy")
    g.add_argument("--threads", type=int, help="ONNX Runtime intra-op threads (default: one per physical core)")
    g.add_argument("--max-lag-s", type=float, default=LoopConfig.max_lag_s, metavar="S",
                   help="overload policy: queued audio beyond S seconds is dropped, oldest first")
    g = p.add_argument_group("output")
    g.add_argument("--jsonl", action="store_true", help="JSON lines on stdout (implied without --serve)")
    g.add_argument("--serve", metavar="HOST:PORT", help=f"WebSocket server, e.g. {access.DEFAULT_HOST}:"
                   f"{access.DEFAULT_PORT}; a non-loopback HOST needs --token")
    g.add_argument("--token", help=f"clients must send 'Authorization: Bearer T' or ?token=T (or set {TOKEN_ENV})")
    g.add_argument("--max-clients", type=int, default=ServerConfig.max_clients)
    g.add_argument("--client-queue", type=int, default=ServerConfig.queue_messages, metavar="N",
                   help="messages queued per client; a client that lets N pile up is dropped")
    g.add_argument("--max-per-address", type=int, default=AudioLimits.max_per_address, metavar="N",
                   help="--input clients: connections from one IP address")
    g.add_argument("--allow-origin", action="append", default=[], metavar="URL",
                   help="let browser pages from this Origin connect (repeatable; none by default)")
    g.add_argument("--report-interval", type=float, default=5.0, metavar="S", help="health + metrics period")
    g.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=args.log_level,
                        format="%(asctime)s ouvir-host %(levelname)s %(message)s")
    try:
        input_cfg, server_cfg = configs(args)
    except (AccessConfigError, ValueError) as e:
        print(f"ouvir-host: {e}", file=sys.stderr)
        return EXIT_USAGE
    return run(args, input_cfg, server_cfg)


def configs(args: argparse.Namespace) -> tuple[InputConfig, ServerConfig | None]:
    if args.input == "file" and args.file is None:
        raise ValueError("--input file needs --file PATH")
    if args.file is not None and args.input != "file":
        raise ValueError("--file is only read with --input file")
    if args.input == CLIENTS and (args.serve is None or args.jsonl or args.save_audio):
        raise ValueError(f"--input {CLIENTS} needs --serve HOST:PORT (and takes no --jsonl or --save-audio): "
                         "each client gets its own captions")
    if args.input == "mic" and importlib.util.find_spec(args.input_backend) is None:
        raise ValueError(f"--input-backend {args.input_backend}: the {args.input_backend} package is not installed"
                         + (" (pip install 'ouvir[pyaudio]')" if args.input_backend == "pyaudio" else ""))
    device = int(args.device) if args.device is not None and args.device.isdigit() else args.device
    input_cfg = InputConfig(args.input, args.file, args.input_backend, device, args.channel, args.raw_format,
                            args.raw_rate, args.raw_channels)
    if args.serve is None:
        if args.token:
            raise ValueError("--token is for --serve")
        return input_cfg, None
    host, port = access.parse_hostport(args.serve)
    server_cfg = ServerConfig(host=host, port=port, token=args.token or os.environ.get(TOKEN_ENV) or None,
                              max_clients=args.max_clients, queue_messages=args.client_queue,
                              origins=tuple(args.allow_origin))
    access.check_config(server_cfg)
    return input_cfg, server_cfg


def _open_recognizer(args: argparse.Namespace) -> tuple[Bundle, Recognizer]:
    """Verify the bundle (sha256 of every file) once, then load its graphs; BundleError names the bad file."""
    if not args.bundle.is_dir():
        raise BundleError(args.bundle, "ouvir-host runs bundle directories (manifest.json + graphs); .nemo and "
                                       "checkpoint files need torch: export an ONNX bundle with ouvir.export first")
    bundle = load_bundle(args.bundle, verify=True)
    if bundle.backend not in HOST_BACKENDS:
        raise BundleError(args.bundle, f"its graphs are {bundle.backend!r}; this torch-free host runs "
                                       f"{list(HOST_BACKENDS)} bundles (see firmware_host/deploy/README.md)")
    from ouvir.engine.backends.onnx_backend import OnnxBackend  # onnxruntime is imported only now

    backend = OnnxBackend(bundle, bundle.select(args.lookahead_ms), threads=args.threads)
    search, lm, lexicon = load_decoding(args.decoding) if args.decoding is not None else (None, None, None)
    return bundle, Recognizer(backend, args.decoder, search=search, lm=lm, lexicon=lexicon)


def run(args: argparse.Namespace, input_cfg: InputConfig, server_cfg: ServerConfig | None) -> int:
    t0 = time.monotonic()
    try:
        bundle, recognizer = _open_recognizer(args)
    except BundleError as e:
        print(f"ouvir-host: refusing the bundle: {e}", file=sys.stderr)
        return EXIT_BUNDLE
    except (EngineError, ValueError, RuntimeError, OSError) as e:
        print(f"ouvir-host: cannot load {args.bundle}: {e}", file=sys.stderr)
        return EXIT_BUNDLE
    info = recognizer.info
    log.info("bundle %s verified and loaded in %.2f s: %s %s, decoder %s, look-ahead %d ms", args.bundle,
             time.monotonic() - t0, bundle.backend, bundle.precision, recognizer.decoder, info.lookahead_ms)
    model = {"backend": bundle.backend, "precision": bundle.precision, "decoder": recognizer.decoder,
             "lookahead_ms": info.lookahead_ms, "att_context_size": list(info.geometry.att_context_size)}
    return host(args, input_cfg, server_cfg, recognizer, model)


def host(args: argparse.Namespace, input_cfg: InputConfig, server_cfg: ServerConfig | None,
         recognizer: Recognizer, model: dict[str, Any]) -> int:
    """Run the host on a loaded recognizer until the input ends or a signal; ``model`` goes into ``hello``."""
    if input_cfg.kind == CLIENTS:
        assert server_cfg is not None
        return _serve_clients(args, server_cfg, recognizer, model)
    with ExitStack() as stack:
        try:
            save = stack.enter_context(audio_writer(args.save_audio))
        except (OSError, RuntimeError) as e:  # soundfile's LibsndfileError is a RuntimeError
            print(f"ouvir-host: cannot write --save-audio {args.save_audio}: {e}", file=sys.stderr)
            return EXIT_USAGE
        return _serve(args, input_cfg, server_cfg, recognizer, model, save)


def _serve(args: argparse.Namespace, input_cfg: InputConfig, server_cfg: ServerConfig | None,
           recognizer: Recognizer, model: dict[str, Any], save: Callable[[np.ndarray], None] | None) -> int:
    loop_cfg = LoopConfig(max_lag_s=args.max_lag_s)
    reader = StoppableReader(sys.stdin.buffer.fileno()) if input_cfg.kind == "stdin" else None

    def open_session() -> HostSession:
        return HostSession(recognizer, open_source(input_cfg, reader), loop_cfg, reader, on_capture=save)

    outputs = Outputs([])
    server = None
    if server_cfg is not None:
        from ouvir.firmware_host.server import CaptionServer

        hello = schema.message("hello", server="ouvir-host", protocol=schema.VERSION, bundle=model,
                               accepts=list(schema.INBOUND), max_message_bytes=schema.MAX_INBOUND_BYTES)
        server = CaptionServer(server_cfg, hello)
        try:
            host, port = server.start()
        except OSError as e:
            print(f"ouvir-host: cannot serve on {server_cfg.host}:{server_cfg.port}: {e}", file=sys.stderr)
            return EXIT_BIND
        log.info("serving captions on ws://%s:%d/%s", host, port, " (token required)" if server_cfg.token else "")
        outputs.sinks.append(server.publish)
    monitor = HostMonitor(f"drop_oldest beyond {loop_cfg.max_lag_s:g} s of lag",
                          clients=server.client_stats if server else None)
    supervisor = Supervisor(open_session, outputs, monitor, BackoffConfig(), args.report_interval)
    if args.jsonl or server is None:  # the reader of stdout going away ends a host that has no other output
        on_broken = supervisor.request_stop if server is None else lambda: log.warning("stdout closed")
        outputs.sinks.append(JsonlSink(sys.stdout, on_broken))
    supervisor.install_signal_handlers()
    try:
        return supervisor.run()
    except (EngineError, OSError) as e:  # the input failed for good (unreadable file, bad stdin PCM, no PortAudio)
        print(f"ouvir-host: input failed: {e}", file=sys.stderr)
        return EXIT_INPUT
    finally:
        if server is not None:
            server.stop()


def _serve_clients(args: argparse.Namespace, server_cfg: ServerConfig, recognizer: Recognizer,
                   model: dict[str, Any]) -> int:
    """The audio server until SIGTERM / SIGINT: clients stream audio in, captions go back to each of them."""
    from ouvir.firmware_host.audio_server import AudioServer
    from ouvir.firmware_host.batcher import BatchConfig

    limits, batch = AudioLimits(max_per_address=args.max_per_address), BatchConfig(max_lag_s=args.max_lag_s)
    hello = schema.message("hello", server="ouvir-host", protocol=schema.VERSION, bundle=model,
                           accepts=list(schema.AUDIO_INBOUND), max_message_bytes=schema.MAX_INBOUND_BYTES,
                           audio={"formats": list(schema.AUDIO_FORMATS), "rates": list(schema.AUDIO_RATES),
                                  "max_channels": schema.AUDIO_MAX_CHANNELS, "max_frame_bytes": limits.max_frame_bytes,
                                  "max_lag_s": batch.max_lag_s})
    server = AudioServer(server_cfg, hello, recognizer, limits, batch)
    try:
        host, port = server.start()
    except OSError as e:
        print(f"ouvir-host: cannot serve on {server_cfg.host}:{server_cfg.port}: {e}", file=sys.stderr)
        return EXIT_BIND
    log.info("serving captions on ws://%s:%d/ for clients' audio%s", host, port,
             " (token required)" if server_cfg.token else "")
    signals: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: signals.append(signum))
    while not signals:
        time.sleep(0.2)
    log.info("%s: stopping", signal.Signals(signals[0]).name)
    server.stop()
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
