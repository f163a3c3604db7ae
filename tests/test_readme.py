"""The README is a user's document, and every command in it runs.

Every line of its ```sh and ```zsh blocks is run in order, as written, by bash (zsh), in a scratch directory
where the placeholders are real files: ``talk.wav`` is the NeMo fixtures' speech and ``model.nemo`` the hybrid
fixture checkpoint (the same four look-aheads as NeMo's large streaming models). Each must exit 0; the ```python
block runs too. A command added to the README is run by this test as it is; inline code that names a command
must be one of them. The exceptions, each checked another way:

* ``make test`` is what CI runs (.ci/run), and its recipe is this very suite; ``make demo`` runs its Makefile
  recipe with this environment's ``ouvir``.
* Commands that capture the microphone (``ouvir listen``, ``ouvir-host`` without ``--input``) run on a private
  PulseAudio daemon's virtual microphone (tests/vmic.py): once they are listening the fixture speech is played
  into it, then Ctrl-C must end them with exit status 0 (all commands run with that microphone as the default).
* ``ouvir models pull NAME`` downloads from a local stand-in for the Hugging Face hub (tests/engine/hub_server.py,
  ``HF_ENDPOINT``) that serves the hybrid fixture under NAME's repo: no network reaches the real one.
* The performance command builds and exports a 114 M-parameter model (about half an hour on 2 cores): it runs
  with ``--config large`` replaced by ``--model model.nemo``, every other option as written, and must be the
  command the committed report of the README's table recorded, whose numbers the table must show.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from ouvir.engine.hub import lookup
from tests import vmic
from tests.conftest import NEMO_FIXTURES, REPO
from tests.engine.hub_server import HubServer, hf_path

pytestmark = pytest.mark.slow
README = REPO / "README.md"
PLACEHOLDERS = {"talk.wav": NEMO_FIXTURES / "test_audio.wav", "model.nemo": NEMO_FIXTURES / "hybrid_multi.nemo"}
PROGRAMS = ("ouvir", "ouvir-host", "make", "python", "pip", "sox", "source")
LARGE = "--config large"
TABLE_REPORT = REPO / "bench" / "large-sherpa" / "bench.json"
HISTORY_WORDS = ("session", "issue", "previously", "used to", "at first", "goal", "budget", "we", "our", "yet")
SECTIONS = ["## Using it", "## Models", "## Export", "## The device host", "## Performance", "## Limits"]
BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Command:
    shell: str  # "sh" (bash) | "zsh" | "python"
    text: str


def readme_commands(text: str) -> list[Command]:
    """Every command of the README's sh / zsh blocks (continuation lines joined, comments dropped) and every
    python block, in order."""
    out = []
    for lang, body in re.findall(r"^```(\w+)\n(.*?)^```", text, flags=re.S | re.M):
        if lang == "python":
            out.append(Command("python", body))
            continue
        assert lang in ("sh", "zsh"), f"a ```{lang} block: the README's commands are sh, zsh or python"
        for line in body.replace("\\\n", " ").splitlines():
            command = re.split(r"\s{2,}#", line)[0].strip()
            if command and not command.startswith("#"):
                out.append(Command(lang, command))
    return out


def test_the_readme_is_a_users_document():
    text = README.read_text()
    lines = text.splitlines()
    assert len(lines) < 200
    first = readme_commands(text)[:2]
    assert [c.text for c in first] == ["make demo", "make test"]
    assert text.index("make demo") < text.index("\n## ")  # the two commands come first
    at = [text.index(s) for s in SECTIONS]
    assert at == sorted(at), "sections: using it, models, export, host, performance, limits"
    prose = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M).lower()
    history = [w for w in HISTORY_WORDS if re.search(rf"\b{w}\b", prose)]
    assert not history, f"the README speaks of the project only, not of its history: {history}"
    assert text.count("<!-- default-model: begin") == text.count("<!-- default-model: end -->") == 1
    run = [c.text for c in readme_commands(text) if c.shell != "python"]
    for span in re.findall(r"`([^`\n]+)`", re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)):
        if span.split()[0] in PROGRAMS and " " in span.strip():
            assert any(c.startswith(span) for c in run), f"inline command `{span}` is not run: put it in a block"


def test_make_test_is_what_ci_runs():
    assert "make test" in (REPO / ".ci" / "run").read_text().splitlines()
    assert _recipe("test") == ["$(PY) -m pytest -q"]  # this suite


def _recipe(target: str) -> list[str]:
    makefile = (REPO / "Makefile").read_text()
    body = re.search(rf"^{target}:.*\n((?:\t.*\n)+)", makefile, flags=re.M)
    assert body, f"no {target} target in the Makefile"
    return [line.strip() for line in body.group(1).splitlines()]


def _resolve(command: Command) -> str:
    """The command line this test runs for ``command`` (see the module doc)."""
    if command.text == "make demo":
        (recipe,) = _recipe("demo")
        return recipe.replace("$(VENV)/bin/", f"{BIN}/")
    if LARGE in command.text:
        report = json.loads(TABLE_REPORT.read_text())
        recorded = " ".join(report["command"])
        recorded = re.sub(r" --(out|cache) \S+", "", recorded)
        assert recorded == command.text, "the README's performance command is not the one its table came from"
        return command.text.replace(LARGE, "--model model.nemo")
    return command.text


def _live(text: str) -> bool:
    return text.startswith("ouvir listen") or (text.startswith("ouvir-host") and "--input" not in text)


def _run_live(line: str, env: dict[str, str], cwd: Path, mic: vmic.VirtualMic) -> tuple[int, str]:
    """Start ``line``; once it says it is listening (or serving), play the speech into the microphone, then
    Ctrl-C. It must exit 0 having printed captions (or served them)."""
    proc = subprocess.Popen(["bash", "-c", f"exec {line}"], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    err: list[str] = []
    ready = threading.Event()

    def read_stderr() -> None:
        for text in proc.stderr:
            err.append(text)
            if re.search(r"listening|serving captions", text):
                ready.set()

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 120
        while not ready.wait(0.2) and proc.poll() is None and time.monotonic() < deadline:
            pass
        if ready.is_set():
            mic.play(cwd / "talk.wav")
            time.sleep(0.5)
            proc.send_signal(signal.SIGINT)
        out = proc.communicate(timeout=120)[0] if ready.is_set() else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(timeout=10)
    log = "".join(err)
    if not ready.is_set():
        return proc.returncode or 1, "never started listening: " + log
    if proc.returncode == 0 and not (out.strip() or "serving captions" in log):
        return 1, "printed no caption: " + log
    return proc.returncode, log


def _run(command: Command, env: dict[str, str], cwd: Path, mic: vmic.VirtualMic) -> tuple[int, str]:
    line = _resolve(command)
    if command.shell == "python":
        proc = subprocess.run([sys.executable, "-c", line], cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=300)
        return proc.returncode, proc.stderr + proc.stdout
    if _live(line):
        return _run_live(line, env, cwd, mic)
    if command.shell == "zsh":
        argv = ["zsh", "-c", f"autoload -U compinit && compinit -u\n{line}"]
    else:
        argv = ["bash", "-o", "pipefail", "-c", line]
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    return proc.returncode, proc.stderr + proc.stdout


def test_every_readme_command_runs(tmp_path):
    if not vmic.available() or shutil.which("zsh") is None or shutil.which("sox") is None:
        pytest.fail("the README's commands need PulseAudio, zsh and sox (make system installs them)")
    for name, source in PLACEHOLDERS.items():
        shutil.copy(source, tmp_path / name)
    commands = [c for c in readme_commands(README.read_text()) if c.text != "make test"]
    assert len(commands) >= 15
    failed = []
    pulled = [lookup(c.text.split()[3]) for c in commands if c.text.startswith("ouvir models pull ")]
    hub = HubServer({hf_path(m.repo_id, m.filename): PLACEHOLDERS["model.nemo"].read_bytes() for m in pulled})
    with vmic.VirtualMic(48000) as mic, hub:
        env = {**mic.env, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "XDG_CACHE_HOME": str(tmp_path / "cache"),
               "HF_ENDPOINT": hub.endpoint}
        env.pop("OUVIR_MODEL", None)
        for command in commands:
            code, output = _run(command, env, tmp_path, mic)
            if code != 0:
                failed.append(f"{command.text}\n  exit status {code}: {output.strip()[-1500:]}")
    assert not failed, "README commands failed:\n" + "\n".join(failed)
    report = json.loads((tmp_path / "bench" / "bench.json").read_text())  # the performance command's run
    assert len(report["runs"]) == 8 and not report["failed"]


def test_the_performance_table_shows_its_report():
    text = README.read_text()
    table = text[text.index("## Performance"):text.index("## Limits")]
    shown = sorted(re.findall(r"^\| (?:ouvir|sherpa-onnx) [^|]+\| [^|]+\| \**([0-9.]+)\**", table, flags=re.M))
    report = json.loads(TABLE_REPORT.read_text())
    assert shown == sorted(f"{r['summary']['rtf']:.3f}" for r in report["runs"])
