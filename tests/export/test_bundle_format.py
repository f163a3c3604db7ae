"""Bundle directories: manifest + sha256 of every file; anything changed, missing, extra or linked is refused
with an error naming the file. No export here (fast)."""

from __future__ import annotations

import json
import os

import pytest
import yaml

from ouvir.engine.bundle import MANIFEST, BundleError, read_manifest, verify_files
from ouvir.export.bundle import export_bundle, select_contexts
from ouvir.export.bundle_writer import check_target, publish, staging_dir, write_bytes, write_manifest
from ouvir.export.cli import main as export_main
from ouvir.export.onnx_export import sherpa_tokens
from ouvir.models.config import from_nemo


def small_bundle(root):
    write_bytes(root, "encoder.onnx", bytes(range(256)) * 64)
    write_bytes(root, "features/window.npy", b"\x93NUMPY" + b"\0" * 100)
    return write_manifest(root, {"backend": "onnx", "precision": "fp32"})


def test_manifest_lists_every_file_with_size_and_sha256(tmp_path):
    manifest = small_bundle(tmp_path)
    assert manifest["format"] == "ouvir-bundle" and manifest["format_version"] == 1
    assert manifest["files"]["encoder.onnx"] == {
        "bytes": 16384, "sha256": "a1f259d4365ed4320c377ce26f5c8c56dcdc9a89e7b641bfd8eabfbbeac86654"}
    assert sorted(manifest["files"]) == ["encoder.onnx", "features/window.npy"]
    assert json.loads((tmp_path / MANIFEST).read_text()) == manifest
    assert verify_files(tmp_path, read_manifest(tmp_path)) == 16384 + 106


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (lambda b: (b / "encoder.onnx").write_bytes(bytes(range(256)) * 63 + bytes(255) + b"\1"),
         "file 'encoder.onnx' does not match its sha256 in manifest.json"),
        (lambda b: (b / "encoder.onnx").write_bytes(b"x"), "file 'encoder.onnx' has 1 bytes, manifest.json says 16384"),
        (lambda b: (b / "features" / "window.npy").unlink(),
         "file 'features/window.npy' listed in manifest.json is missing"),
        (lambda b: (b / "features" / "extra.bin").write_bytes(b""), "file 'features/extra.bin' is not listed"),
        (lambda b: os.symlink(b / "encoder.onnx", b / "link.onnx"), "file 'link.onnx' is not listed"),
    ],
)
def test_changed_missing_or_extra_files_are_refused_by_name(tmp_path, tamper, message):
    small_bundle(tmp_path)
    tamper(tmp_path)
    with pytest.raises(BundleError, match=message):
        verify_files(tmp_path, read_manifest(tmp_path))


def test_a_listed_file_replaced_by_a_link_is_refused(tmp_path):
    small_bundle(tmp_path)
    target = tmp_path.parent / "outside.onnx"
    target.write_bytes((tmp_path / "encoder.onnx").read_bytes())
    (tmp_path / "encoder.onnx").unlink()
    os.symlink(target, tmp_path / "encoder.onnx")
    with pytest.raises(BundleError, match=r"file 'encoder.onnx' is not a regular file"):
        verify_files(tmp_path, read_manifest(tmp_path))


@pytest.mark.parametrize("path", ["../escape.onnx", "/etc/passwd", "a/./b", "a\\b"])
def test_unsafe_manifest_paths_are_refused(tmp_path, path):
    manifest = small_bundle(tmp_path)
    manifest["files"][path] = manifest["files"].pop("encoder.onnx")
    (tmp_path / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=r"unsafe path"):
        verify_files(tmp_path, read_manifest(tmp_path))


def test_unreadable_or_foreign_manifests_are_refused(tmp_path):
    with pytest.raises(BundleError, match=r"manifest.json is missing"):
        read_manifest(tmp_path)
    (tmp_path / MANIFEST).write_text("{not json")
    with pytest.raises(BundleError, match=r"manifest.json is unreadable"):
        read_manifest(tmp_path)
    (tmp_path / MANIFEST).write_text(json.dumps({"format": "ouvir-bundle", "format_version": 2, "files": {"a": {}}}))
    with pytest.raises(BundleError, match=r"format_version 2 is not supported"):
        read_manifest(tmp_path)


def test_publish_replaces_only_bundles(tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not empty"):
        check_target(other, force=False)
    staged = staging_dir(other)
    assert staged.parent == tmp_path and list(staged.iterdir()) == []
    small_bundle(staged)
    with pytest.raises(FileExistsError, match="not an ouvir bundle"):
        publish(staged, other, force=True)
    assert (other / "notes.txt").read_text() == "keep me"
    bundle = publish(staged, tmp_path / "bundle", force=False)
    again = staging_dir(bundle)
    (again / "new.txt").write_text("new")
    with pytest.raises(FileExistsError, match="use --force"):
        publish(again, bundle, force=False)
    assert publish(again, bundle, force=True) == bundle
    assert sorted(p.name for p in bundle.iterdir()) == ["new.txt"] and not again.exists()


def test_sherpa_tokens_end_with_the_blank():
    assert sherpa_tokens(("<unk>", "▁the", "s")) == "<unk> 0\n▁the 1\ns 2\n<blk> 3\n"


def test_static_int8_needs_calibration_audio(nemo_dir, tmp_path):
    with pytest.raises(ValueError, match="static int8 export needs calibration audio"):
        export_bundle(nemo_dir / "ctc_conformer.nemo", tmp_path / "b", "onnx", "int8", method="static")
    with pytest.raises(ValueError, match="references transcribe the --calibration files"):
        export_bundle(nemo_dir / "ctc_conformer.nemo", tmp_path / "b", "onnx", "int8", references=["a b"])
    assert not (tmp_path / "b").exists()


def test_lookaheads_are_chosen_by_ms_or_context(nemo_dir):
    cfg = from_nemo(yaml.safe_load((nemo_dir / "hybrid_multi_model_config.yaml").read_text()))
    assert select_contexts(cfg, None) == [(70, 13), (70, 6), (70, 1), (70, 0)]
    assert select_contexts(cfg, [80, "70_13", (70, 0), 1040]) == [(70, 1), (70, 13), (70, 0)]
    with pytest.raises(ValueError, match=r"no look-ahead 500; it has 1040 ms \(70_13\), 480 ms \(70_6\)"):
        select_contexts(cfg, [500])


def test_export_cli_reports_bad_requests_with_exit_2(nemo_dir, tmp_path, capsys):
    model = str(nemo_dir / "hybrid_multi.nemo")
    assert export_main([model, "-o", str(tmp_path / "b"), "--quantize", "int8", "--method", "static"]) == 2
    assert "static int8 export needs calibration audio" in capsys.readouterr().err
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("x")
    assert export_main([model, "-o", str(tmp_path / "notes"), "--force"]) == 2
    assert "refusing to replace" in capsys.readouterr().err
