"""Reading and verifying an ouvir bundle: a directory with ``manifest.json`` and the files it lists.

The manifest says everything a runtime needs (model config, features, per-look-ahead geometry and graphs,
state layout, tokens, backend, quantization); no runtime sniffs file names. Every file in the directory
is listed in ``manifest["files"]`` with its size and sha256, and nothing else may be there: loading a
bundle whose files are missing, extra, changed or linked fails with a ``BundleError`` naming the file.
The writer is ``ouvir.export.bundle_writer``. numpy only.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from ouvir.engine.backends.base import ChunkGeometry, ModelInfo
from ouvir.engine.errors import EngineError
from ouvir.engine.features_config import FeatureConfig

MANIFEST = "manifest.json"
FORMAT = "ouvir-bundle"
FORMAT_VERSION = 1
_HASH_BLOCK = 1 << 20


class BundleError(EngineError, ValueError):
    """A bundle that is unreadable, incomplete or whose files do not match its manifest."""

    def __init__(self, bundle: str | Path, problem: str) -> None:
        super().__init__(f"bundle {bundle}: {problem}")
        self.bundle = str(bundle)
        self.problem = problem


@dataclass(frozen=True)
class Graph:
    """One exported graph: a file (and, for .pte programs, a method), its tensors in call order."""

    file: str
    method: str | None
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    info: dict[str, Any]  # the manifest entry as written (shapes, dtypes, chunk sizes, ...)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Graph:
        return cls(
            file=d["file"],
            method=d.get("method"),
            inputs=tuple(t["name"] for t in d["inputs"]),
            outputs=tuple(t["name"] for t in d["outputs"]),
            info=d,
        )


@dataclass(frozen=True)
class Lookahead:
    """One attention context of the model, with its streaming geometry and encoder graphs."""

    name: str  # "70_13"
    att_context_size: tuple[int, int]
    lookahead_ms: float
    geometry: dict[str, Any]  # models.geometry.StreamingGeometry as a dict (NeMo streaming_cfg names)
    chunk_geometry: ChunkGeometry  # what the engine's scheduler needs
    state: dict[str, Any]  # models.state.StateSpec.to_dict(): cache names, layer-first shapes ("B"), dtypes
    encoder_first: Graph  # step 0: chunk_size[0] columns, nothing dropped
    encoder_next: Graph  # steps >= 1: pre_encode_cache_size[1] + chunk_size[1] columns, drop_extra_pre_encoded
    extra: dict[str, Graph]  # further graphs of this look-ahead (e.g. the sherpa-onnx CTC model)


@dataclass(frozen=True)
class Bundle:
    root: Path
    manifest: dict[str, Any]
    backend: str  # "onnx" | "pte"
    precision: str  # "fp32" | "int8"
    features: FeatureConfig
    tokens: tuple[str, ...]  # vocabulary without blank
    blank_id: int
    decoders: tuple[str, ...]  # ("rnnt", "ctc") in preference order
    lookaheads: dict[str, Lookahead]
    default_lookahead: str
    heads: dict[str, Graph]  # "ctc", "rnnt_decoder", "rnnt_joint" as present

    @property
    def model_config(self) -> dict[str, Any]:
        """``ModelConfig.to_dict()`` of the exported model (``ModelConfig.from_dict`` rebuilds it)."""
        return self.manifest["model"]

    def path(self, rel: str) -> Path:
        return self.root / rel

    def select(self, lookahead_ms: int | None) -> Lookahead:
        """The look-ahead of ``lookahead_ms`` (rounded to whole ms); None = the bundle's default."""
        if lookahead_ms is None:
            return self.lookaheads[self.default_lookahead]
        for la in self.lookaheads.values():
            if round(la.lookahead_ms) == lookahead_ms:
                return la
        have = ", ".join(f"{round(la.lookahead_ms)} ms {list(la.att_context_size)}" for la in self.lookaheads.values())
        raise BundleError(self.root, f"no {lookahead_ms} ms look-ahead; it has {have}")

    def model_info(self, la: Lookahead) -> ModelInfo:
        """What the engine needs to run look-ahead ``la`` (features, vocabulary, geometry, decoders, ...)."""
        rnnt = self.model_config.get("rnnt")
        return ModelInfo(
            features=self.features,
            vocabulary=self.tokens,
            geometry=la.chunk_geometry,
            decoders=self.decoders,
            max_symbols=int(rnnt["max_symbols"]) if rnnt else 0,
            window=self.feature_window(),
            filterbank=self.mel_filterbank(),
        )

    def lookahead(self, which: str | int | tuple[int, int] | None = None) -> Lookahead:
        """Select a look-ahead by name ("70_13"), (left, right) or right context; None = the default."""
        if which is None:
            return self.lookaheads[self.default_lookahead]
        key = tuple(which) if isinstance(which, list | tuple) else which
        for la in self.lookaheads.values():
            if key in (la.name, la.att_context_size, la.att_context_size[1]):
                return la
        raise BundleError(self.root, f"no look-ahead {which!r}; it holds {sorted(self.lookaheads)}")

    def feature_window(self) -> np.ndarray:
        """The analysis window stored with the model (e.g. NeMo's symmetric Hann), float32 (win_length,)."""
        return np.load(self.path(self.manifest["features"]["window"]), allow_pickle=False)

    def mel_filterbank(self) -> np.ndarray:
        """The mel filterbank stored with the model, float32 (n_mels, n_fft // 2 + 1)."""
        return np.load(self.path(self.manifest["features"]["filterbank"]), allow_pickle=False)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_HASH_BLOCK):
            h.update(block)
    return h.hexdigest()


def _safe_rel(root: Path, rel: str) -> str:
    p = PurePosixPath(rel)
    if not rel or p.is_absolute() or "\\" in rel or any(part in ("..", ".", "") for part in rel.split("/")):
        raise BundleError(root, f"manifest lists an unsafe path {rel!r}")
    return rel


def _listed_on_disk(root: Path) -> set[str]:
    out: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            out.add(Path(dirpath, name).relative_to(root).as_posix())
    return out - {MANIFEST}


def read_manifest(root: str | Path) -> dict[str, Any]:
    root = Path(root)
    if not root.is_dir():
        raise BundleError(root, "not a directory")
    path = root / MANIFEST
    if not path.is_file():
        raise BundleError(root, f"{MANIFEST} is missing")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BundleError(root, f"{MANIFEST} is unreadable ({e})") from e
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleError(root, f"{MANIFEST} is not an {FORMAT} manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise BundleError(
            root,
            f"format_version {manifest.get('format_version')!r} is not supported (this ouvir reads {FORMAT_VERSION})",
        )
    if not isinstance(manifest.get("files"), dict) or not manifest["files"]:
        raise BundleError(root, f"{MANIFEST} lists no files")
    return manifest


def verify_files(root: str | Path, manifest: dict[str, Any]) -> int:
    """Check every listed file (regular, not a link, size, sha256) and that nothing unlisted is present.

    Returns the number of bytes checked; raises ``BundleError`` naming the first offending file.
    """
    root = Path(root)
    listed = {_safe_rel(root, rel): entry for rel, entry in manifest["files"].items()}
    extra = sorted(_listed_on_disk(root) - set(listed))
    if extra:
        raise BundleError(root, f"file {extra[0]!r} is not listed in {MANIFEST}" + (
            f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""))
    total = 0
    for rel, entry in sorted(listed.items()):
        path = root / rel
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            raise BundleError(root, f"file {rel!r} listed in {MANIFEST} is missing") from None
        if not stat.S_ISREG(st.st_mode):
            raise BundleError(root, f"file {rel!r} is not a regular file (links are not allowed)")
        if st.st_size != entry["bytes"]:
            raise BundleError(root, f"file {rel!r} has {st.st_size} bytes, {MANIFEST} says {entry['bytes']}: "
                                    "the bundle was modified or is corrupt")
        if sha256_file(path) != entry["sha256"]:
            raise BundleError(root, f"file {rel!r} does not match its sha256 in {MANIFEST}: "
                                    "the bundle was modified or is corrupt")
        total += st.st_size
    return total


def _referenced_files(manifest: dict[str, Any]) -> list[str]:
    refs = [manifest["features"]["window"], manifest["features"]["filterbank"]]
    refs += [g["file"] for g in manifest["heads"].values()]
    for la in manifest["lookaheads"].values():
        refs += [g["file"] for g in la["graphs"].values()]
    optional = (manifest["tokens"].get("tokenizer"), manifest["tokens"].get("sherpa_tokens"),
                (manifest.get("quantization") or {}).get("report"))
    refs += [f for f in optional if f]
    return refs


def load_bundle(root: str | Path, verify: bool = True) -> Bundle:
    """Read ``root/manifest.json``, verify every file (unless ``verify=False``) and return the ``Bundle``."""
    root = Path(root)
    m = read_manifest(root)
    if verify:
        verify_files(root, m)
    try:
        missing = sorted(set(_referenced_files(m)) - set(m["files"]))
        if missing:
            raise BundleError(root, f"{MANIFEST} refers to {missing[0]!r}, which it does not list")
        lookaheads = {}
        for name, la in m["lookaheads"].items():
            graphs = {k: Graph.from_dict(g) for k, g in la["graphs"].items()}
            lookaheads[name] = Lookahead(
                name=name,
                att_context_size=tuple(la["att_context_size"]),
                lookahead_ms=float(la["geometry"]["lookahead_ms"]),
                geometry=la["geometry"],
                chunk_geometry=ChunkGeometry.from_dict(la["chunk_geometry"]),
                state=la["state"],
                encoder_first=graphs.pop("encoder_first"),
                encoder_next=graphs.pop("encoder_next"),
                extra=graphs,
            )
        bundle = Bundle(
            root=root,
            manifest=m,
            backend=m["backend"],
            precision=m["precision"],
            features=FeatureConfig.from_dict(m["features"]["config"]),
            tokens=tuple(m["tokens"]["pieces"]),
            blank_id=int(m["tokens"]["blank_id"]),
            decoders=tuple(m["decoders"]),
            lookaheads=lookaheads,
            default_lookahead=m["default_lookahead"],
            heads={k: Graph.from_dict(g) for k, g in m["heads"].items()},
        )
    except (KeyError, TypeError, ValueError) as e:
        if isinstance(e, BundleError):
            raise
        raise BundleError(root, f"{MANIFEST} is malformed ({type(e).__name__}: {e})") from e
    if bundle.default_lookahead not in lookaheads:
        raise BundleError(root, f"default look-ahead {bundle.default_lookahead!r} is not in the bundle")
    return bundle


# ----------------------------------------------------------------------------------------------- CLI


def add_verify_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """``ouvir verify BUNDLE``: wire into the engine CLI; the parser's ``func`` returns the exit code."""
    p = subparsers.add_parser("verify", help="check a bundle's files against its manifest (sha256)")
    p.add_argument("bundle", type=Path, help="bundle directory (holds manifest.json)")
    p.set_defaults(func=verify_cli)
    return p


def verify_cli(args: argparse.Namespace) -> int:
    try:
        bundle = load_bundle(args.bundle)
    except BundleError as e:
        print(f"FAILED: {e}")
        return 1
    files = bundle.manifest["files"]
    print(
        f"OK: {args.bundle}: {len(files)} files, {sum(f['bytes'] for f in files.values())} bytes match {MANIFEST}; "
        f"backend {bundle.backend} {bundle.precision}, look-aheads {', '.join(bundle.lookaheads)} "
        f"(default {bundle.default_lookahead}), decoders {', '.join(bundle.decoders)}"
    )
    return 0
