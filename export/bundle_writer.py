"""Writing an ouvir bundle directory: files first, then ``manifest.json`` listing every file's size and
sha256 (the reader and verifier is ``ouvir.engine.bundle``)."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ouvir.engine.bundle import FORMAT, FORMAT_VERSION, MANIFEST, BundleError, read_manifest, sha256_file


def check_target(out_dir: Path, force: bool) -> None:
    """``out_dir`` may be written: absent or empty, or (with ``force``) an existing bundle to replace."""
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        if not force:
            raise FileExistsError(f"{out_dir} exists and is not empty (use --force to replace a bundle)")
        try:
            read_manifest(out_dir)
        except BundleError as e:
            raise FileExistsError(f"refusing to replace {out_dir}: it is not an ouvir bundle ({e.problem})") from e


def staging_dir(out_dir: Path) -> Path:
    """An empty directory beside ``out_dir`` to write the bundle into before ``publish``."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".partial", dir=out_dir.parent))
    staged.chmod(0o755)  # mkdtemp makes it private; a bundle is as readable as its parent allows
    return staged


def publish(staged: Path, out_dir: Path, force: bool) -> Path:
    """Move the finished bundle ``staged`` to ``out_dir`` (replacing a bundle there only with ``force``)."""
    check_target(out_dir, force)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    staged.rename(out_dir)
    return out_dir


def save_array(out_dir: Path, rel: str, array: np.ndarray) -> str:
    """``np.save`` (no pickle) under ``out_dir``; returns ``rel``."""
    path = out_dir / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        np.save(f, np.ascontiguousarray(array), allow_pickle=False)
    return rel


def write_text(out_dir: Path, rel: str, text: str) -> str:
    path = out_dir / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return rel


def write_bytes(out_dir: Path, rel: str, data: bytes) -> str:
    path = out_dir / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return rel


def write_manifest(out_dir: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Add format fields and the ``files`` table (every file under ``out_dir`` but the manifest), write it."""
    files = {}
    for path in sorted(p for p in out_dir.rglob("*") if (p.is_file() and p.name != MANIFEST) or p.is_symlink()):
        if path.is_symlink():
            raise ValueError(f"{path} is a link; bundles hold regular files only")
        rel = path.relative_to(out_dir).as_posix()
        files[rel] = {"bytes": path.stat().st_size, "sha256": sha256_file(path)}
    full = {"format": FORMAT, "format_version": FORMAT_VERSION, **manifest, "files": files}
    (out_dir / MANIFEST).write_text(json.dumps(full, indent=1, sort_keys=False) + "\n", encoding="utf-8")
    return full
