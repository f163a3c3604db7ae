"""``ouvir completion bash|zsh``: the scripts are sourced by real shells and asked for completions."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

OUVIR = Path(sys.executable).with_name("ouvir")
# (words typed, the last one being completed) -> completions offered
CASES = [
    (["ouvir", "tr"], ["transcribe"]),
    (["ouvir", "--v"], ["--version"]),
    (["ouvir", "transcribe", "--for"], ["--format"]),
    (["ouvir", "transcribe", "--format", ""], ["txt", "json", "srt", "vtt"]),
    (["ouvir", "transcribe", "a.wav", "--backend", "o"], ["onnx"]),
    (["ouvir", "export", "m.nemo", "--quantize", ""], ["none", "int8"]),
    (["ouvir", "bench", "--lookahead-ms", ""], []),  # a number: nothing to offer
    (["ouvir", "completion", ""], ["bash", "zsh"]),
    (["ouvir", "transcribe", "talk"], ["talk.wav"]),  # files
]
# t WORD...: complete the last word, print one completion a line, then "--"
BASH_ASK = ('t() { COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMPREPLY=(); _ouvir; '
            'for x in "${COMPREPLY[@]}"; do echo "$x"; done; echo --; }\n')
# zsh: what bashcompinit's _bash_complete does, up to compadd (which keeps the candidates that start with the word)
ZSH_ASK = ('t() { local -a COMP_WORDS COMPREPLY words; local COMP_CWORD CURRENT=$#; words=("$@"); '
           'COMP_CWORD=$((CURRENT - 1)); COMP_WORDS=("${words[@]}"); compgen -F _ouvir -- "${words[CURRENT]}"; '
           'echo --; }\n')


def _complete(shell: str, setup: str, cwd: Path) -> list[list[str]]:
    calls = "".join("t " + " ".join(f"'{w}'" for w in words) + "\n" for words, _ in CASES)
    out = subprocess.run([shell, "-c", setup + calls], capture_output=True, text=True, timeout=60, cwd=cwd)
    assert out.returncode == 0, out.stderr
    return [block.splitlines() for block in out.stdout.split("--\n")[:-1]]


def test_bash_completes_subcommands_options_choices_and_files(tmp_path):
    (tmp_path / "talk.wav").write_bytes(b"")
    got = _complete("bash", f"source <({OUVIR} completion bash)\n" + BASH_ASK, tmp_path)
    assert got == [expected for _, expected in CASES]


def test_zsh_runs_the_same_completion_through_bashcompinit(tmp_path):
    if shutil.which("zsh") is None:
        pytest.fail("zsh is missing (make system installs it)")
    (tmp_path / "talk.wav").write_bytes(b"")
    (tmp_path / "other.txt").write_bytes(b"")
    setup = f"autoload -U compinit && compinit -u\nsource <({OUVIR} completion zsh)\n"
    out = subprocess.run(["zsh", "-c", setup + "print -r -- $_comps[ouvir]"], capture_output=True, text=True,
                         timeout=60, cwd=tmp_path)
    assert out.returncode == 0 and out.stdout == "_bash_complete -o filenames -F _ouvir\n", out.stderr
    got = _complete("zsh", setup + ZSH_ASK, tmp_path)
    # _bash_complete drops empty lines (an unquoted (f) split); compadd keeps what starts with the typed word
    kept = [[c for c in offered if c and c.startswith(words[-1])]
            for offered, (words, _) in zip(got, CASES, strict=True)]
    assert kept == [expected for _, expected in CASES]
