"""The safe tar reader refuses every kind of malicious or broken archive, naming the member."""

from __future__ import annotations

import gzip
import io
import random
import tarfile
from pathlib import Path

import pytest

from ouvir.models.archive import ArchiveError, ArchiveLimits, normalize_name, read_members


def _file(name: str, data: bytes) -> tuple[tarfile.TarInfo, io.BytesIO]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, io.BytesIO(data)


def _special(name: str, kind: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info, None


def _write(path: Path, members: list[tuple[tarfile.TarInfo, io.BytesIO | None]], mode: str = "w") -> Path:
    with tarfile.open(path, mode) as tar:
        for info, data in members:
            tar.addfile(info, data)
    return path


def _all(name: str) -> bool:
    return True


def test_reads_wanted_members_of_plain_and_gzipped_tars(tmp_path):
    members = [_special("./", tarfile.DIRTYPE), _file("./model_config.yaml", b"a: 1\n"),
               _file("./x_tokenizer.model", b"spm"), _file("sub/other.bin", b"\x00" * 10)]
    for mode, name in (("w", "m.nemo"), ("w:gz", "m.tar.gz")):
        path = _write(tmp_path / name, [(i, io.BytesIO(d.getvalue()) if d else None) for i, d in members], mode)
        got = read_members(path, lambda n: n.endswith((".yaml", "tokenizer.model")))
        assert got == {"model_config.yaml": b"a: 1\n", "x_tokenizer.model": b"spm"}
    assert read_members(tmp_path / "m.nemo", _all)["sub/other.bin"] == b"\x00" * 10


@pytest.mark.parametrize(
    ("member", "message"),
    [
        (_file("../evil.txt", b"x"), "path traversal in '../evil.txt'"),
        (_file("ok/../../evil.txt", b"x"), "path traversal in 'ok/../../evil.txt'"),
        (_file("/etc/evil", b"x"), "absolute path '/etc/evil'"),
        (_special("link", tarfile.SYMTYPE, "/etc/passwd"), "member 'link' is a link (to '/etc/passwd')"),
        (_special("hard", tarfile.LNKTYPE, "model_config.yaml"), "member 'hard' is a link"),
        (_special("dev", tarfile.CHRTYPE), "member 'dev' is not a regular file"),
        (_special("blk", tarfile.BLKTYPE), "member 'blk' is not a regular file"),
        (_special("pipe", tarfile.FIFOTYPE), "member 'pipe' is not a regular file"),
    ],
)
def test_refuses_malicious_members(tmp_path, member, message):
    path = _write(tmp_path / "bad.nemo", [_file("model_config.yaml", b"a: 1\n"), member])
    with pytest.raises(ArchiveError) as err:
        read_members(path, lambda n: n == "model_config.yaml")  # refused even when not wanted
    assert message in str(err.value)
    assert str(path) in str(err.value)


def test_refuses_oversized_member(tmp_path):
    path = _write(tmp_path / "big.nemo", [_file("small", b"x" * 10), _file("weights", b"x" * 101)])
    with pytest.raises(ArchiveError, match=r"member 'weights' is 101 bytes \(limit 100\)"):
        read_members(path, _all, ArchiveLimits(max_member_bytes=100))
    assert read_members(path, _all, ArchiveLimits(max_member_bytes=101))["weights"] == b"x" * 101


def test_refuses_too_many_members_and_too_many_bytes(tmp_path):
    path = _write(tmp_path / "many.nemo", [_file(f"f{i}", b"abcd") for i in range(5)])
    with pytest.raises(ArchiveError, match="more than 4 members"):
        read_members(path, _all, ArchiveLimits(max_members=4))
    with pytest.raises(ArchiveError, match="members exceed 12 bytes at 'f3'"):
        read_members(path, _all, ArchiveLimits(max_total_bytes=12))
    assert len(read_members(path, _all, ArchiveLimits(max_members=5))) == 5


def test_refuses_duplicate_names(tmp_path):
    path = _write(tmp_path / "dup.nemo", [_file("./model_weights.ckpt", b"a"), _file("model_weights.ckpt", b"b")])
    with pytest.raises(ArchiveError, match=r"duplicate member 'model_weights\.ckpt'"):
        read_members(path, _all)


def test_truncated_and_corrupt_files(tmp_path):
    rng = random.Random(0)  # incompressible data, so a cut gzip stream is cut inside the members
    good = _write(tmp_path / "good.nemo", [_file("a", rng.randbytes(5000)), _file("b", rng.randbytes(5000))])
    data = good.read_bytes()
    cut = tmp_path / "cut.nemo"
    cut.write_bytes(data[:3000])  # inside member "a"'s data
    with pytest.raises(ArchiveError, match=r"cut\.nemo"):
        read_members(cut, _all)
    cut.write_bytes(data[:5632 + 100])  # "a" complete, "b"'s header cut: tarfile alone would stop silently
    with pytest.raises(ArchiveError, match="no end-of-archive block"):
        read_members(cut, _all)
    cut.write_bytes(data[:5632] + b"\x7f" * 512 + bytes(10240))  # garbled header where "b" should start
    with pytest.raises(ArchiveError, match="no end-of-archive block"):
        read_members(cut, _all)
    garbage = tmp_path / "garbage.nemo"
    garbage.write_bytes(b"this is not a tar archive at all" * 40)
    with pytest.raises(ArchiveError, match="not a readable tar archive"):
        read_members(garbage, _all)
    gz = tmp_path / "cut.tar.gz"
    gz.write_bytes(gzip.compress(data)[:5700])  # member "b"'s header is cut
    with pytest.raises(ArchiveError, match=r"cut\.tar\.gz"):
        read_members(gz, _all)
    with pytest.raises(ArchiveError, match="not a readable tar archive"):
        read_members(tmp_path / "absent.nemo", _all)


def test_normalize_name():
    assert normalize_name("./a/./b") == "a/b"
    assert normalize_name("a") == "a"
    for bad in ("..", "a/../../b", "/abs", "C:/x", "\\\\server\\x", "a\\..\\..\\b"):
        with pytest.raises(ArchiveError):
            normalize_name(bad)
