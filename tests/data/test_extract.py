"""Safe extraction: good archives unpack exactly; unsafe ones are refused and nothing escapes."""

from __future__ import annotations

import io
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from sartm.cli import cli
from sartm.data import extract
from sartm.data.extract import ExtractError, safe_extract


def all_paths(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}


def tree(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    (src / "a" / "b").mkdir(parents=True)
    (src / "a" / "b" / "data.bin").write_bytes(bytes(range(256)) * 40)
    (src / "top.txt").write_text("hello")
    return src


def add_tar_member(tar: tarfile.TarFile, name: str, *, data: bytes = b"x", **attrs) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data) if attrs.get("type", tarfile.REGTYPE) == tarfile.REGTYPE else 0
    for key, value in attrs.items():
        setattr(info, key, value)
    tar.addfile(info, io.BytesIO(data) if info.size else None)


def add_zip_symlink(zf: zipfile.ZipFile, name: str, target: str) -> None:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    zf.writestr(info, target)


@pytest.mark.parametrize("mode", ["zip", "w", "w:gz", "w:bz2", "w:xz"])
def test_extracts_every_format_exactly(tmp_path, mode, archive_makers):
    src = tree(tmp_path)
    if mode == "zip":
        archive = archive_makers["zip"](src, tmp_path / "a.zip")
    else:
        archive = archive_makers["tar"](src, tmp_path / "a.tar", mode=mode)
    out = safe_extract(archive, tmp_path / "out", progress=False)
    assert all_paths(out) == all_paths(src)
    assert (out / "a" / "b" / "data.bin").read_bytes() == (
        src / "a" / "b" / "data.bin"
    ).read_bytes()
    assert (out / "top.txt").read_text() == "hello"
    assert stat.S_IMODE(out.stat().st_mode) == 0o755
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]


def _zip(path: Path, entries: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return path


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("../evil.txt", "contains '..'"),
        ("ok/../../evil.txt", "contains '..'"),
        ("..\\evil.txt", "contains '..'"),
        ("/abs/evil.txt", "absolute path"),
        ("C:/evil.txt", "absolute path"),
    ],
)
def test_zip_slip_refused_and_nothing_written(tmp_path, name, reason):
    work = tmp_path / "work"
    work.mkdir()
    archive = _zip(tmp_path / "bad.zip", {"fine.txt": b"ok", name: b"evil"})
    before = all_paths(tmp_path)
    with pytest.raises(ExtractError, match=reason) as err:
        safe_extract(archive, work / "out", progress=False)
    assert str(archive) in str(err.value) and repr(name) in str(err.value)
    assert all_paths(tmp_path) == before  # no output, no partial folder, nothing outside


def test_zip_symlinks(tmp_path):
    outside = tmp_path / "bad.zip"
    with zipfile.ZipFile(outside, "w") as zf:
        zf.writestr("dir/file.txt", "ok")
        add_zip_symlink(zf, "dir/escape", "../../secret")
    with pytest.raises(ExtractError, match="points outside"):
        safe_extract(outside, tmp_path / "out1", progress=False)
    assert not (tmp_path / "out1").exists()

    absolute = tmp_path / "abs.zip"
    with zipfile.ZipFile(absolute, "w") as zf:
        add_zip_symlink(zf, "link", "/etc/passwd")
    with pytest.raises(ExtractError, match="absolute"):
        safe_extract(absolute, tmp_path / "out2", progress=False)

    inside = tmp_path / "in.zip"
    with zipfile.ZipFile(inside, "w") as zf:
        zf.writestr("dir/file.txt", "ok")
        add_zip_symlink(zf, "dir/alias.txt", "file.txt")
    out = safe_extract(inside, tmp_path / "out3", progress=False)
    assert (out / "dir" / "alias.txt").is_symlink()
    assert (out / "dir" / "alias.txt").read_text() == "ok"


def test_zip_device_file_refused(tmp_path):
    archive = tmp_path / "dev.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        info = zipfile.ZipInfo("null")
        info.create_system = 3
        info.external_attr = (stat.S_IFCHR | 0o666) << 16
        zf.writestr(info, b"")
    with pytest.raises(ExtractError, match="device or special"):
        safe_extract(archive, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_damaged_zip_leaves_nothing(tmp_path):
    archive = _zip(tmp_path / "crc.zip", {"a.txt": b"A" * 1000, "b.txt": b"B" * 1000})
    raw = bytearray(archive.read_bytes())
    position = raw.find(b"B" * 50)  # stored uncompressed: flip a data byte of b.txt
    raw[position] ^= 0xFF
    archive.write_bytes(bytes(raw))
    with pytest.raises(ExtractError, match="'b.txt' is damaged"):
        safe_extract(archive, tmp_path / "out", progress=False)
    assert all_paths(tmp_path) == {"crc.zip"}


@pytest.mark.parametrize(
    ("member", "reason"),
    [
        ({"name": "../evil.txt"}, "contains '..'"),
        ({"name": "/abs.txt"}, "absolute path"),
        ({"name": "link", "type": tarfile.SYMTYPE, "linkname": "/etc/passwd"}, "absolute"),
        ({"name": "d/link", "type": tarfile.SYMTYPE, "linkname": "../../x"}, "points outside"),
        ({"name": "hard", "type": tarfile.LNKTYPE, "linkname": "../x"}, "points outside"),
        ({"name": "null", "type": tarfile.CHRTYPE, "devmajor": 1, "devminor": 3}, "device"),
        ({"name": "fifo", "type": tarfile.FIFOTYPE}, "device"),
    ],
)
def test_tar_unsafe_entries_refused(tmp_path, member, reason):
    work = tmp_path / "work"
    work.mkdir()
    archive = tmp_path / "bad.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        add_tar_member(tar, "fine/first.txt", data=b"first")
        add_tar_member(tar, **member)
        add_tar_member(tar, "fine/after.txt", data=b"after")
    before = all_paths(tmp_path)
    with pytest.raises(ExtractError, match=reason) as err:
        safe_extract(archive, work / "out", progress=False)
    assert str(archive) in str(err.value)
    assert all_paths(tmp_path) == before


def test_tar_chained_symlink_escape_refused(tmp_path):
    """sub/up -> .. stays inside, but writing through it would let sub/up/x -> .. escape."""
    work = tmp_path / "work"
    work.mkdir()
    archive = tmp_path / "chain.tar"
    with tarfile.open(archive, "w") as tar:
        add_tar_member(tar, "sub", type=tarfile.DIRTYPE)
        add_tar_member(tar, "sub/up", type=tarfile.SYMTYPE, linkname="..")
        add_tar_member(tar, "sub/up/x", type=tarfile.SYMTYPE, linkname="..")
        add_tar_member(tar, "sub/up/x/escaped.txt", data=b"evil")
    with pytest.raises(ExtractError, match="through a symlink"):
        safe_extract(archive, work / "out", progress=False)
    assert not list(tmp_path.rglob("escaped.txt"))
    assert all_paths(work) == set()


def test_tar_internal_links_kept(tmp_path):
    archive = tmp_path / "links.tar"
    with tarfile.open(archive, "w") as tar:
        add_tar_member(tar, "d/file.txt", data=b"content")
        add_tar_member(tar, "d/sym.txt", type=tarfile.SYMTYPE, linkname="file.txt")
        add_tar_member(tar, "d/hard.txt", type=tarfile.LNKTYPE, linkname="d/file.txt")
    out = safe_extract(archive, tmp_path / "out", progress=False)
    assert (out / "d" / "sym.txt").is_symlink() and (out / "d" / "sym.txt").read_text() == "content"
    assert (out / "d" / "hard.txt").read_text() == "content"


def test_truncated_tar_leaves_nothing(tmp_path, archive_makers):
    archive = archive_makers["tar"](tree(tmp_path), tmp_path / "t.tar.gz")
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(ExtractError, match="damaged or truncated"):
        safe_extract(archive, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]


def test_not_an_archive(tmp_path):
    path = tmp_path / "notes.zip"
    path.write_text("plain text")
    with pytest.raises(ExtractError, match="not a zip or tar archive"):
        safe_extract(path, tmp_path / "out", progress=False)


def test_interrupted_extraction_leaves_nothing(tmp_path, monkeypatch, archive_makers):
    src = tree(tmp_path)
    (src / "z.txt").write_text("last")
    archive = archive_makers["zip"](src, tmp_path / "a.zip")
    calls = {"n": 0}
    real_copy = extract.shutil.copyfileobj

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real_copy(*args, **kwargs)

    monkeypatch.setattr(extract.shutil, "copyfileobj", interrupted)
    with pytest.raises(KeyboardInterrupt):
        safe_extract(archive, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]


def test_existing_output_needs_force(tmp_path, archive_makers):
    archive = archive_makers["zip"](tree(tmp_path), tmp_path / "a.zip")
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(ExtractError, match="already exists"):
        safe_extract(archive, out, progress=False)
    assert (out / "old.txt").exists()
    safe_extract(archive, out, force=True, progress=False)
    assert not (out / "old.txt").exists() and (out / "top.txt").exists()


def test_cli_extract(tmp_path, archive_makers):
    archive = archive_makers["tar"](tree(tmp_path), tmp_path / "a.tar.xz", mode="w:xz")
    runner = CliRunner()
    result = runner.invoke(cli, ["data", "extract", str(archive), "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "o" / "a" / "b" / "data.bin").is_file()

    bad = _zip(tmp_path / "bad.zip", {"../x": b""})
    result = runner.invoke(cli, ["data", "extract", str(bad), "--out", str(tmp_path / "p")])
    assert result.exit_code == 1
    assert "contains '..'" in result.output and str(bad) in result.output
    assert not (tmp_path / "p").exists() and not (tmp_path / "x").exists()
