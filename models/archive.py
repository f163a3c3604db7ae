"""Safe, in-memory reading of tar archives (``.nemo`` files and ouvir checkpoints).

Every member is checked before anything is read: path traversal (``..``, absolute paths), links,
devices / fifos, oversized members, too many members and duplicate names are refused with an
``ArchiveError`` naming the member. Nothing is ever written to disk.
"""

from __future__ import annotations

import tarfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath


class ArchiveError(ValueError):
    """An archive that is unreadable or unsafe (the message names the archive and member)."""


@dataclass(frozen=True)
class ArchiveLimits:
    max_member_bytes: int = 4 << 30  # one member (the weights of a 600M-parameter model fit)
    max_total_bytes: int = 8 << 30  # all regular members together
    max_members: int = 256


DEFAULT_LIMITS = ArchiveLimits()


def normalize_name(name: str) -> str:
    """``./a/b`` -> ``a/b``; raises on absolute paths and ``..`` components."""
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise ArchiveError(f"absolute path {name!r}")
    parts = [p for p in PurePosixPath(name.replace("\\", "/")).parts if p != "."]
    if ".." in parts:
        raise ArchiveError(f"path traversal in {name!r}")
    return "/".join(parts)


def _check(member: tarfile.TarInfo, limits: ArchiveLimits) -> str | None:
    """The member's normalized name if it is a regular file, ``None`` for a directory; raise otherwise."""
    name = normalize_name(member.name)
    if member.issym() or member.islnk():
        raise ArchiveError(f"member {member.name!r} is a link (to {member.linkname!r})")
    if member.isdir():
        return None
    if not member.isreg():
        raise ArchiveError(f"member {member.name!r} is not a regular file (device, fifo or special)")
    if member.size > limits.max_member_bytes:
        raise ArchiveError(f"member {member.name!r} is {member.size} bytes (limit {limits.max_member_bytes})")
    return name


def _check_end(tar: tarfile.TarFile) -> None:
    """tarfile stops silently at a truncated or garbled header after the first member; a complete archive
    ends with a zero block where iteration stopped."""
    tar.fileobj.seek(tar.offset)
    end = tar.fileobj.read(tarfile.BLOCKSIZE)
    if len(end) != tarfile.BLOCKSIZE or end.count(0) != tarfile.BLOCKSIZE:
        raise ArchiveError(f"truncated or corrupt after {tar.offset} bytes (no end-of-archive block)")


def read_members(
    path: str | Path, wanted: Callable[[str], bool], limits: ArchiveLimits = DEFAULT_LIMITS
) -> dict[str, bytes]:
    """Validate every member of the (optionally gzipped) tar at ``path``; return ``{name: bytes}`` for
    the regular files whose normalized name satisfies ``wanted``."""
    out: dict[str, bytes] = {}
    seen: set[str] = set()
    total = 0
    try:
        with tarfile.open(path, mode="r:*") as tar:
            for count, member in enumerate(tar, start=1):
                if count > limits.max_members:
                    raise ArchiveError(f"more than {limits.max_members} members")
                name = _check(member, limits)
                if name is None:
                    continue
                if name in seen:
                    raise ArchiveError(f"duplicate member {member.name!r}")
                seen.add(name)
                total += member.size
                if total > limits.max_total_bytes:
                    raise ArchiveError(f"members exceed {limits.max_total_bytes} bytes at {member.name!r}")
                if wanted(name):
                    data = tar.extractfile(member).read()  # type: ignore[union-attr]
                    if len(data) != member.size:
                        raise ArchiveError(f"member {member.name!r} is truncated")
                    out[name] = data
            _check_end(tar)
    except ArchiveError as e:
        raise ArchiveError(f"{path}: {e}") from None
    except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
        raise ArchiveError(f"{path}: not a readable tar archive ({e})") from e
    return out
