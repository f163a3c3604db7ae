"""ouvir-host's command line without a model: usage and safety refusals, tampered bundles, and that the host
never imports torch (checked in subprocesses where importing torch fails)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ouvir.export.bundle_writer import write_bytes, write_manifest
from ouvir.firmware_host.cli import EXIT_BUNDLE, EXIT_USAGE, main
from tests.conftest import REPO

HOST_MODULES = ("access", "audio_server", "batcher", "cli", "monitor", "schema", "server", "session", "supervisor")


@pytest.fixture(scope="module")
def torchless(tmp_path_factory) -> dict[str, str]:
    """Environment whose Python cannot import torch or executorch (a sitecustomize shim)."""
    shim = tmp_path_factory.mktemp("torchless")
    (shim / "sitecustomize.py").write_text(
        'import sys\nsys.modules["torch"] = None  # import torch -> ImportError\nsys.modules["executorch"] = None\n')
    return {"PYTHONPATH": str(shim), "PATH": "/usr/bin:/bin"}


def run_host(args: list[str], env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ouvir.firmware_host.cli", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def minimal_bundle(root: Path) -> Path:
    """Files and a manifest in the bundle format (enough for verification, which runs first)."""
    write_bytes(root, "encoder.onnx", b"\x08\x07" + bytes(range(256)) * 8)
    write_bytes(root, "tokens/tokenizer.model", b"spm")
    write_manifest(root, {"backend": "onnx", "precision": "fp32"})
    return root


def test_host_modules_import_without_torch(torchless):
    code = ("import importlib, sys\n"
            f"for m in {HOST_MODULES!r}: importlib.import_module('ouvir.firmware_host.' + m)\n"
            "import ouvir.engine.backends.onnx_backend\n"
            "print(sorted(k for k in sys.modules if k.split('.')[0] in ('torch', 'executorch')))")
    shimmed = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=torchless, capture_output=True, text=True)
    assert shimmed.returncode == 0, shimmed.stderr
    plain = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.strip() == "[]"  # nothing of torch was even attempted


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (lambda b: (b / "encoder.onnx").write_bytes((b / "encoder.onnx").read_bytes()[:-1] + b"X"),
         "file 'encoder.onnx' does not match its sha256 in manifest.json"),
        (lambda b: (b / "tokens" / "tokenizer.model").unlink(),
         "file 'tokens/tokenizer.model' listed in manifest.json is missing"),
        (lambda b: (b / "evil.so").write_bytes(b"\x7fELF"), "file 'evil.so' is not listed in manifest.json"),
        (lambda b: (b / "encoder.onnx").write_bytes(b"short"), "file 'encoder.onnx' has 5 bytes"),
    ],
)
def test_tampered_bundle_is_refused_naming_the_file(tmp_path, torchless, tamper, message):
    bundle = minimal_bundle(tmp_path / "bundle")
    tamper(bundle)
    proc = run_host([str(bundle), "--input", "stdin"], torchless)
    assert proc.returncode == EXIT_BUNDLE
    assert f"ouvir-host: refusing the bundle: bundle {bundle}: {message}" in proc.stderr
    assert proc.stdout == ""


def test_checkpoint_files_and_pte_bundles_are_refused(tmp_path, torchless, nemo_dir):
    proc = run_host([str(nemo_dir / "hybrid_multi.nemo"), "--input", "stdin"], torchless)
    assert proc.returncode == EXIT_BUNDLE
    assert "runs bundle directories" in proc.stderr
    bundle = tmp_path / "pte"
    write_bytes(bundle, "encoder.pte", b"ET12")
    write_manifest(bundle, {"backend": "pte", "precision": "fp32"})
    proc = run_host([str(bundle), "--input", "stdin"], torchless)
    assert proc.returncode == EXIT_BUNDLE


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--serve", "0.0.0.0:8765"], "refusing to serve on '0.0.0.0' without a token"),
        (["--serve", "[::]:8765"], "refusing to serve on '::' without a token"),
        (["--serve", "0.0.0.0:8765", "--token", "abc"], "the token must be >= 16"),
        (["--serve", "8765"], "--serve expects HOST:PORT"),
        (["--input", "file"], "--input file needs --file PATH"),
        (["--token", "0123456789abcdef0123"], "--token is for --serve"),
        (["--input", "clients"], "--input clients needs --serve HOST:PORT"),
    ],
)
def test_unsafe_or_incomplete_configurations_exit_2(tmp_path, capsys, monkeypatch, argv, message):
    monkeypatch.delenv("OUVIR_HOST_TOKEN", raising=False)
    assert main([str(tmp_path), *argv]) == EXIT_USAGE
    assert message in capsys.readouterr().err


def test_token_from_the_environment_satisfies_a_public_bind(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("OUVIR_HOST_TOKEN", "0123456789abcdef0123")
    # The configuration passes; the (empty) bundle is what is refused next.
    assert main([str(tmp_path), "--serve", "0.0.0.0:0", "--input", "stdin"]) == EXIT_BUNDLE
    assert "manifest.json is missing" in capsys.readouterr().err
