"""The ``ouvir`` command. The bar: ``ouvir transcribe`` with the torch backend prints exactly NeMo's streaming
text of the fixture file for every look-ahead and decoder."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ouvir.engine.cli import Printer, main
from ouvir.engine.events import Final, Lag, Partial

from .reference import reference

pytest.importorskip("torch")
OUVIR = Path(sys.executable).with_name("ouvir")
pytestmark = pytest.mark.usefixtures("one_torch_thread")
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}




BAR = [("hybrid_multi", ms, ctx, dec) for ms, ctx in ((0, "c70_0"), (80, "c70_1"), (480, "c70_6"), (1040, "c70_13"))
       for dec in ("rnnt", "ctc")] + [("ctc_conformer", 280, "c64_7", "ctc")]


@pytest.mark.parametrize(("model", "lookahead_ms", "ctx", "decoder"), BAR)
def test_transcribe_prints_nemos_streaming_text(nemo_dir, capsys, model, lookahead_ms, ctx, decoder):
    argv = ["transcribe", "--model", str(nemo_dir / f"{model}.nemo"), str(nemo_dir / "test_audio.wav"),
            "--lookahead-ms", str(lookahead_ms), "--decoder", decoder]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out == reference(nemo_dir, model)[0]["streaming"][ctx][f"{decoder}_text"] + "\n"


def test_console_script_json_lines(nemo_dir, tmp_path):
    wav, copy = nemo_dir / "test_audio.wav", tmp_path / "copy.wav"
    shutil.copy(wav, copy)
    out = subprocess.run([str(OUVIR), "transcribe", "--model", str(nemo_dir / "hybrid_multi.nemo"), str(wav),
                          str(copy), "--json"], capture_output=True, text=True, timeout=120, env=ONE_THREAD)
    assert out.returncode == 0, out.stderr
    events = [json.loads(line) for line in out.stdout.splitlines()]
    text = reference(nemo_dir, "hybrid_multi")[0]["streaming"]["c70_13"]["rnnt_text"]
    split = [e["file"] for e in events].index(str(copy))
    for path, mine in ((wav, events[:split]), (copy, events[split:])):  # one file after the other, labelled
        assert {e["file"] for e in mine} == {str(path)}
        assert [e["type"] for e in mine] == ["partial"] * (len(mine) - 1) + ["final"]
        assert mine[-2]["text"] == mine[-1]["text"] == text
        final = mine[-1]
        assert (final["segment"], final["start_s"], final["end_s"]) == (0, 0.0, 8.0)
        assert [t["frame"] for t in final["tokens"]][:4] == [2, 5, 8, 12]


def test_errors_are_reported_by_name(nemo_dir, capsys, monkeypatch):
    monkeypatch.delenv("OUVIR_MODEL", raising=False)
    wav = str(nemo_dir / "test_audio.wav")
    assert main(["transcribe", wav, "--backend", "pte", "--precision", "fp32"]) == 1
    assert "the default model ships no pte fp32 build" in capsys.readouterr().err
    assert main(["transcribe", wav, "--model", str(nemo_dir / "hybrid_multi.nemo"), "--lookahead-ms", "100"]) == 1
    assert "no 100 ms look-ahead; it has 1040 ms [70, 13], 480 ms [70, 6], 80 ms [70, 1], 0 ms [70, 0]" in \
        capsys.readouterr().err
    assert main(["transcribe", wav, "--model", str(nemo_dir / "hybrid_multi.nemo"), "--precision", "int8"]) == 1
    assert "fp32 only" in capsys.readouterr().err
    assert main(["transcribe", wav, "--model", str(nemo_dir / "hybrid_multi.nemo"), "--backend", "onnx"]) == 1
    assert "backend 'onnx' needs a bundle directory" in capsys.readouterr().err
    assert main(["transcribe", str(nemo_dir / "missing.wav"), "--model", str(nemo_dir / "hybrid_multi.nemo")]) == 1
    assert "missing.wav: no such file" in capsys.readouterr().err


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_partials_are_rewritten_in_place_on_a_terminal_only():
    events = [Partial("the", 0, 0.0), Partial("the qu", 0, 0.0), Lag(1.0, 1.0, 0.0),
              Final("the quick", 0, 0.0, 1.0, ()),
              Partial("fox", 1, 1.0), Final("fox", 1, 1.0, 2.0, ())]
    tty, pipe = _Terminal(), io.StringIO()
    show_tty, show_pipe = Printer(tty), Printer(pipe)
    for event in events:
        show_tty(event)
        show_pipe(event)
    assert tty.getvalue() == "\r\x1b[Kthe\r\x1b[Kthe qu\r\x1b[Kthe quick\n\r\x1b[Kfox\r\x1b[Kfox\n"
    assert pipe.getvalue() == "the quick\nfox\n"


def test_realtime_ctrl_c_prints_the_final_of_the_audio_so_far(nemo_dir):
    """--realtime plays the 8 s file like a microphone; Ctrl-C after ~3 s ends with one final line."""
    text = reference(nemo_dir, "hybrid_multi")[0]["streaming"]["c70_6"]["rnnt_text"]
    proc = subprocess.Popen([str(OUVIR), "transcribe", "--model", str(nemo_dir / "hybrid_multi.nemo"),
                             str(nemo_dir / "test_audio.wav"), "--lookahead-ms", "480", "--realtime", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ONE_THREAD)
    first = proc.stdout.readline()  # the first partial: the model is loaded and audio flows
    assert json.loads(first)["type"] == "partial"
    time.sleep(1.5)
    start = time.monotonic()
    proc.send_signal(signal.SIGINT)
    rest, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert time.monotonic() - start < 5.0  # it did not play the rest of the file
    events = [json.loads(line) for line in [first, *rest.splitlines()]]
    finals = [e for e in events if e["type"] == "final"]
    assert len(finals) == 1 and 0 < len(finals[0]["text"]) < len(text)
    assert text.startswith(finals[0]["text"].rsplit(" ", 1)[0])
    assert events[-1]["type"] == "lag" and events[-1]["captured_s"] < 7.0


def test_raw_pcm_on_stdin_with_a_chosen_channel(nemo_dir):
    """Headerless stereo s16le on stdin; the speech is in channel 1, noise in channel 0: ``--channel 1`` gives
    exactly the text of the file."""
    import soundfile as sf

    mono, rate = sf.read(nemo_dir / "test_audio.wav", dtype="int16")
    noise = np.random.default_rng(0).integers(-8000, 8000, len(mono), dtype=np.int16)
    stereo = np.stack([noise, mono], axis=1).tobytes()
    out = subprocess.run([str(OUVIR), "transcribe", "-", "--model", str(nemo_dir / "hybrid_multi.nemo"),
                          "--raw-format", "s16le", "--rate", str(rate), "--channels", "2", "--channel", "1"],
                         input=stereo, capture_output=True, timeout=120, env=ONE_THREAD)
    assert out.returncode == 0, out.stderr.decode()
    text = reference(nemo_dir, "hybrid_multi")[0]["streaming"]["c70_13"]["rnnt_text"]
    assert out.stdout.decode() == text + "\n"


def test_python_dash_m_runs_the_cli(nemo_dir):
    """``python -m ouvir.engine.cli`` is the console script (it once imported the module and exited 0 silently)."""
    out = subprocess.run([sys.executable, "-m", "ouvir.engine.cli", "verify", str(nemo_dir)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and out.stdout.startswith(f"FAILED: bundle {nemo_dir}: manifest.json is missing")


def test_a_bundle_runs_as_what_it_holds(capsys, monkeypatch):
    """``ouvir transcribe --model <int8 bundle>`` needs no --precision / --backend (a bundle holds one of each);
    asking for what it does not hold is refused by name. The default model's builds are chosen by either."""
    from ouvir.engine.default_model import default_model, root, samples
    from ouvir.engine.recognizer import Recognizer
    from ouvir.models.train.evaluate import load_audio, streaming_texts

    monkeypatch.delenv("OUVIR_MODEL", raising=False)
    wav = samples()[0].path
    for name, backend in (("onnx-int8", "onnx"), ("pte-int8", "pte")):
        bundle = root() / name
        assert main(["transcribe", "--model", str(bundle), str(wav)]) == 0
        explicit = Recognizer.open(bundle, backend, "int8")
        assert capsys.readouterr().out == streaming_texts(explicit, [load_audio(str(wav))])[0] + "\n"
        assert main(["transcribe", "--model", str(bundle), str(wav), "--precision", "fp32"]) == 1
        assert "it holds int8 graphs, not fp32" in capsys.readouterr().err
    assert default_model(None, None) == (root() / "onnx-fp32", "onnx")
    assert default_model(None, "int8") == (root() / "onnx-int8", "onnx")
    assert default_model("pte", None) == (root() / "pte-int8", "pte")
    assert default_model("torch", None) == (root() / "model.ouvir", "torch")
    assert main(["transcribe", str(wav), "--backend", "pte"]) == 0  # the default model's only .pte build
    assert capsys.readouterr().out.strip()


def test_version_is_the_package_version():
    from importlib.metadata import version

    out = subprocess.run([str(OUVIR), "--version"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout == f"ouvir {version('ouvir')}\n"
