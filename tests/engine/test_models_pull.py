"""``ouvir models pull NAME`` against a local hub (tests/engine/hub_server.py) through huggingface_hub's real
download code, then ``--model NAME``. The bar: pull, then ``ouvir transcribe --model NAME`` prints the
fixture's NeMo text; interrupted downloads resume; a corrupted file is refused by name; no network is a clear
error naming the cache.

The served checkpoint is the hybrid_multi fixture's members plus a 24 MiB padding member (the loader reads
only the members it needs): huggingface_hub writes what it receives in 10 MiB pieces, so only a download
longer than that can be cut and resumed part-way."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from ouvir.engine.cli import main
from ouvir.engine.hub import lookup
from ouvir.engine.hub_download import HubError, download

from .hub_server import COMMIT, HubServer, hf_path, ngc_path
from .reference import reference

OUVIR = Path(sys.executable).with_name("ouvir")
NAME = "stt_en_fastconformer_hybrid_large_streaming_multi"  # served: the hybrid_multi NeMo fixture
NGC_NAME = "stt_en_fastconformer_hybrid_large_streaming_80ms"


@pytest.fixture(scope="module")
def checkpoint(nemo_dir, tmp_path_factory) -> bytes:
    """The hybrid_multi fixture's members and 24 MiB of padding, as a .nemo (tar)."""
    path = tmp_path_factory.mktemp("hub") / "padded.nemo"
    padding = bytes(range(256)) * (24 << 12)
    with tarfile.open(nemo_dir / "hybrid_multi.nemo") as src, tarfile.open(path, "w") as out:
        for member in src:
            out.addfile(member, src.extractfile(member) if member.isfile() else None)
        info = tarfile.TarInfo("./padding.bin")
        info.size = len(padding)
        out.addfile(info, io.BytesIO(padding))
    return path.read_bytes()


def _served(data: bytes, **faults: object) -> HubServer:
    entry = lookup(NAME)
    return HubServer({hf_path(entry.repo_id, entry.filename): data}, **faults)  # type: ignore[arg-type]


def _starts(ranges: list[str | None]) -> list[int]:
    return [int(r.removeprefix("bytes=").rstrip("-")) if r else 0 for r in ranges]


def _ouvir(tmp_path: Path, endpoint: str, *argv: str, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "OUVIR_"))}
    environ.update(HF_ENDPOINT=endpoint, HF_HOME=str(tmp_path / "hf"), OUVIR_HOME=str(tmp_path / "ouvir"),
                   HF_HUB_DISABLE_TELEMETRY="1", OMP_NUM_THREADS="1", **env)
    return subprocess.run([str(OUVIR), *argv], capture_output=True, text=True, timeout=600, env=environ)


def _blobs(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "hf" / "hub").glob("models--*/blobs/*"))


def test_pull_resumes_then_transcribe_by_name_gives_nemos_text(checkpoint, nemo_dir, tmp_path):
    with _served(checkpoint, cut_after=len(checkpoint) // 2) as hub:  # drops at the same byte every time
        out = _ouvir(tmp_path, hub.endpoint, "models", "pull", NAME, "--lookahead", "1040", "--quiet")
    assert out.returncode == 1
    assert f"downloading nvidia/{NAME}/{NAME}.nemo (main) from {hub.endpoint} into {tmp_path / 'hf' / 'hub'} " \
           "failed (peer closed connection" in out.stderr
    starts = _starts(hub.ranges("GET"))
    assert starts[0] == 0 and starts[1] > 0 and starts[1:] == [starts[1]] * 5  # resumed 5 times, then gave up
    assert _blobs(tmp_path) == []  # nothing partial is left behind

    with _served(checkpoint, cut_once=True) as hub:  # dropped once halfway: resumed where it broke
        out = _ouvir(tmp_path, hub.endpoint, "models", "pull", NAME, "--lookahead", "1040", "--quiet")
    assert out.returncode == 0, out.stderr
    first, again = _starts(hub.ranges("GET"))
    assert first == 0 and 0 < again <= len(checkpoint) // 2
    store = tmp_path / "ouvir" / "models" / NAME
    source = json.loads((store / "source.json").read_text())
    assert source["sha256"] == hashlib.sha256(checkpoint).hexdigest()
    assert (source["commit"], source["sha256_checked"]) == (COMMIT, ["the hub's metadata"])
    manifest = store / "onnx-fp32" / "manifest.json"
    assert list(json.loads(manifest.read_text())["lookaheads"]) == ["70_13"]
    assert f"run it: ouvir transcribe --model {NAME} FILE" in out.stdout

    text = reference(nemo_dir, "hybrid_multi")[0]["streaming"]["c70_13"]["rnnt_text"]
    for backend in ("onnx", "torch"):  # torch: the downloaded .nemo itself
        out = _ouvir(tmp_path, hub.endpoint, "transcribe", "--model", NAME, str(nemo_dir / "test_audio.wav"),
                     "--backend", backend)
        assert (out.returncode, out.stdout) == (0, text + "\n"), out.stderr

    stamp = manifest.stat().st_mtime_ns
    with _served(checkpoint) as hub:  # pulled already: the hub is asked for metadata only, nothing is exported
        out = _ouvir(tmp_path, hub.endpoint, "models", "pull", NAME, "--lookahead", "1040", "--quiet")
    assert out.returncode == 0, out.stderr
    assert (hub.ranges("GET"), manifest.stat().st_mtime_ns) == ([], stamp)
    out = _ouvir(tmp_path, hub.endpoint, "models", "pull", NAME, "--quantize", "int8", "--lookahead", "1040",
                 "--calibration", str(nemo_dir / "test_audio.wav"), "--quiet")  # a second build of the same download
    assert out.returncode == 0, out.stderr
    assert (store / "onnx-int8" / "quantization_report.json").is_file()
    out = _ouvir(tmp_path, hub.endpoint, "transcribe", "--model", NAME, str(nemo_dir / "test_audio.wav"),
                 "--precision", "int8")
    assert out.returncode == 0 and len(out.stdout.split()) >= 5, out.stderr
    out = _ouvir(tmp_path, hub.endpoint, "models", "list")
    assert f"{NAME}\n" in out.stdout and "pulled: onnx-fp32, onnx-int8" in out.stdout


def test_corrupted_download_is_refused_by_name_and_deleted(checkpoint, tmp_path):
    with _served(checkpoint, corrupt=True) as hub:
        out = _ouvir(tmp_path, hub.endpoint, "models", "pull", NAME)
    assert out.returncode == 1
    digest = hashlib.sha256(checkpoint).hexdigest()
    snapshot = tmp_path / "hf" / "hub" / f"models--nvidia--{NAME}" / "snapshots" / COMMIT / f"{NAME}.nemo"
    assert f"ouvir: error: {snapshot}: sha256 " in out.stderr
    assert f"is not {digest} (the hub's metadata for hf:nvidia/{NAME}/{NAME}.nemo): the download is corrupt" \
        in out.stderr
    assert not snapshot.exists() and _blobs(tmp_path) == []


def test_no_network_names_the_cache(tmp_path):
    hub_cache = tmp_path / "hf" / "hub"
    out = _ouvir(tmp_path, "http://127.0.0.1:9", "models", "pull", NAME)  # nothing listens on port 9
    assert out.returncode == 1
    assert (f"ouvir: error: {NAME}: http://127.0.0.1:9 cannot be reached and nvidia/{NAME}/{NAME}.nemo (main) is "
            f"not in the Hugging Face cache at {hub_cache}") in out.stderr
    out = _ouvir(tmp_path, "http://127.0.0.1:9", "models", "pull", NAME, HF_HUB_OFFLINE="1")
    assert f"offline mode is on (HF_HUB_OFFLINE=1) and nvidia/{NAME}/{NAME}.nemo (main) is not in the Hugging Face " \
           f"cache at {hub_cache}" in out.stderr


def test_ngc_download_resumes_and_checks_a_known_digest(checkpoint, tmp_path, monkeypatch):
    entry = lookup(NGC_NAME)
    with HubServer({ngc_path(entry.ngc, entry.filename): checkpoint}, cut_once=True) as hub:
        monkeypatch.setenv("OUVIR_NGC_ENDPOINT", hub.endpoint)
        got = download(entry, tmp_path)
        first, again = _starts(hub.ranges("GET"))
        assert first == 0 and 0 < again <= len(checkpoint) // 2
        assert (got.path.read_bytes() == checkpoint, got.checked) == (True, ())  # NGC publishes no digest
        pinned = dataclasses.replace(entry, sha256="0" * 64)
        with pytest.raises(HubError, match=f"{got.path}: sha256 {got.sha256} is not 0{{64}} \\(ouvir's registry"):
            download(pinned, tmp_path)
        assert not got.path.exists()
        assert download(dataclasses.replace(entry, sha256=got.sha256), tmp_path).checked == ("ouvir's registry",)


def test_model_names_resolve_only_when_pulled(nemo_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OUVIR_HOME", str(tmp_path))
    wav = str(nemo_dir / "test_audio.wav")
    assert main(["transcribe", "--model", NAME, wav]) == 1
    assert (f"{NAME}: no pulled build in {tmp_path / 'models' / NAME} (nothing is pulled yet): run `ouvir models "
            f"pull {NAME}`") in capsys.readouterr().err
    assert main(["transcribe", "--model", NAME, wav, "--backend", "pte", "--precision", "int8"]) == 1
    assert f"no pulled pte int8 build in {tmp_path / 'models' / NAME} (nothing is pulled yet): run `ouvir models " \
           f"pull {NAME} --format pte --quantize int8`" in capsys.readouterr().err
    assert main(["transcribe", "--model", "no_such_model", wav]) == 1
    assert "model no_such_model does not exist: it is neither a file, a bundle directory nor a published model " \
           "name" in capsys.readouterr().err
    assert main(["bench", "--model", NAME, "--out", str(tmp_path / "bench")]) == 1  # the bench resolves names too
    assert f"run `ouvir models pull {NAME}`" in capsys.readouterr().err
