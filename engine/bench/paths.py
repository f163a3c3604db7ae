"""Paths as bench reports record them: relative to the project (the working directory) when inside it,
``ouvir/...`` inside the installed package, otherwise just the file's name; never where the machine keeps
things (``/tmp/...``, a home directory, a cache)."""

from __future__ import annotations

import re
from importlib.resources import files
from pathlib import Path
from typing import Any

PACKAGES = ("ouvir.engine", "ouvir.models", "ouvir.export", "ouvir.firmware_host", "ouvir")  # innermost first
_ABSOLUTE = re.compile(r"(?<![\w.:/~-])/[^\s:'\"`,;()\[\]]+")  # an absolute path inside a string


def portable(path: str | Path, root: Path | None = None) -> str:
    """``path`` relative to ``root`` (default: the working directory) when inside it, as ``ouvir/...`` inside
    the installed package, else its name."""
    p = Path(path).absolute()
    root = (Path.cwd() if root is None else root).absolute()
    if p.is_relative_to(root) and p != root:
        return p.relative_to(root).as_posix()
    for name in PACKAGES:
        base = Path(str(files(name)))
        if p.is_relative_to(base):
            return (Path(*name.split(".")) / p.relative_to(base)).as_posix()
    return p.name


def portable_paths(value: Any, root: Path | None = None) -> Any:
    """``value`` (JSON-like: dicts, lists, strings, numbers) with every absolute path in its strings made
    ``portable``."""
    if isinstance(value, str):
        return _ABSOLUTE.sub(lambda m: portable(m.group(0), root), value)
    if isinstance(value, dict):
        return {k: portable_paths(v, root) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [portable_paths(v, root) for v in value]
    return value
