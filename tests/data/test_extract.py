"""Safe extraction: good archives unpack exactly; unsafe ones (links, duplicate names, bombs) are
refused and nothing escapes; an existing folder is replaced only when sartm extracted it."""

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
from sartm.data.common import SOURCE_NAME, DataError
from sartm.data.extract import ExtractError, Limits, check_expansion, safe_extract


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
    assert all_paths(out) == all_paths(src) | {SOURCE_NAME}
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


@pytest.mark.parametrize(
    "links",
    [
        [("dir/escape", "../../secret")],
        [("link", "/etc/passwd")],
        [("dir/alias.txt", "file.txt")],  # inside: still refused, no dataset ships links
        [("dir/up", ".."), ("dir/up/x", "..")],  # a chain whose every link looks inside
    ],
    ids=["outside", "absolute", "inside", "chain"],
)
def test_zip_links_refused(tmp_path, links):
    archive = tmp_path / "links.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("dir/file.txt", "ok")
        for name, target in links:
            add_zip_symlink(zf, name, target)
    before = all_paths(tmp_path)
    with pytest.raises(ExtractError, match="is a link; archives with links are refused") as err:
        safe_extract(archive, tmp_path / "out", progress=False)
    assert str(archive) in str(err.value) and repr(links[0][0]) in str(err.value)
    assert all_paths(tmp_path) == before


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
        ({"name": "link", "type": tarfile.SYMTYPE, "linkname": "/etc/passwd"}, "is a link"),
        ({"name": "d/link", "type": tarfile.SYMTYPE, "linkname": "../../x"}, "is a link"),
        ({"name": "d/in", "type": tarfile.SYMTYPE, "linkname": "../fine"}, "is a link"),
        ({"name": "hard", "type": tarfile.LNKTYPE, "linkname": "../x"}, "is a link"),
        ({"name": "hard", "type": tarfile.LNKTYPE, "linkname": "fine/first.txt"}, "is a link"),
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
    with pytest.raises(ExtractError, match="'sub/up' is a link"):
        safe_extract(archive, work / "out", progress=False)
    assert not list(tmp_path.rglob("escaped.txt"))
    assert all_paths(work) == set()


@pytest.mark.parametrize("kind", ["tar", "zip"])
def test_duplicate_names_refused(tmp_path, kind):
    """A later entry of the same name could write through an earlier one (a link): any name
    given twice (here also spelt differently) is refused before anything is written."""
    work = tmp_path / "work"
    work.mkdir()
    if kind == "tar":
        archive = tmp_path / "dup.tar"
        with tarfile.open(archive, "w") as tar:
            add_tar_member(tar, "d/f.txt", data=b"one")
            add_tar_member(tar, "./d/f.txt", data=b"two")
    else:
        archive = tmp_path / "dup.zip"
        with zipfile.ZipFile(archive, "w") as zf:
            zf.writestr("d/f.txt", "one")
            zf.writestr("./d/f.txt", "two")
    with pytest.raises(ExtractError, match="appears twice") as err:
        safe_extract(archive, work / "out", progress=False)
    assert str(archive) in str(err.value) and "f.txt" in str(err.value)
    assert all_paths(work) == set()


def test_tar_file_link_file_refused(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("mine")
    archive = tmp_path / "through.tar"
    with tarfile.open(archive, "w") as tar:
        add_tar_member(tar, "f.txt", data=b"one")
        add_tar_member(tar, "f.txt", type=tarfile.SYMTYPE, linkname=str(victim))
        add_tar_member(tar, "f.txt", data=b"evil")
    with pytest.raises(ExtractError, match="'f.txt' is a link"):
        safe_extract(archive, work / "out", progress=False)
    assert victim.read_text() == "mine" and all_paths(work) == set()


def test_entry_below_a_file_refused(tmp_path):
    archive = _zip(tmp_path / "clash.zip", {"a": b"file", "a/b.txt": b"below"})
    with pytest.raises(ExtractError, match="'a/b.txt' lies below 'a', which is a file"):
        safe_extract(archive, tmp_path / "out", progress=False)
    assert all_paths(tmp_path) == {"clash.zip"}


# --- decompression bombs and disk space --------------------------------------------------------

BOMB = 40 << 20  # zeros: over RATIO_FLOOR, and they compress about 1000-fold


def bomb(tmp_path: Path, kind: str) -> Path:
    if kind == "zip":
        archive = tmp_path / "bomb.zip"
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("zeros.bin", bytes(BOMB))
    else:
        archive = tmp_path / "bomb.tar.gz"
        with tarfile.open(archive, "w:gz", compresslevel=1) as tar:
            add_tar_member(tar, "zeros.bin", data=bytes(BOMB))
    return archive


@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_decompression_bomb_refused_unless_allowed(tmp_path, kind):
    archive = bomb(tmp_path, kind)
    assert archive.stat().st_size * 200 < BOMB
    with pytest.raises(ExtractError, match="-fold .* over the limit of 100-fold") as err:
        safe_extract(archive, tmp_path / "out", progress=False)
    assert str(archive) in str(err.value) and "--max-ratio" in str(err.value)
    assert all_paths(tmp_path) == {archive.name}
    out = safe_extract(archive, tmp_path / "out", progress=False, limits=Limits(max_ratio=1e5))
    assert (out / "zeros.bin").stat().st_size == BOMB


@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_total_size_limit(tmp_path, kind, archive_makers):
    src = tree(tmp_path)  # 10245 bytes of content
    if kind == "zip":
        archive = archive_makers["zip"](src, tmp_path / "a.zip")
    else:
        archive = archive_makers["tar"](src, tmp_path / "a.tar")
    small = Limits(max_expand_gb=10_000 / 1e9)
    with pytest.raises(ExtractError, match="expands to 0.00 GB, over the limit of 1e-05 GB") as err:
        safe_extract(archive, tmp_path / "out", progress=False, limits=small)
    assert "--max-expand-gb" in str(err.value) and not (tmp_path / "out").exists()
    safe_extract(archive, tmp_path / "out", progress=False, limits=Limits(20_000 / 1e9))
    assert (tmp_path / "out" / "top.txt").read_text() == "hello"


def test_free_space_checked(tmp_path):
    archive = _zip(tmp_path / "a.zip", {"a.txt": b"a"})
    free = extract.shutil.disk_usage(tmp_path).free
    unlimited = Limits(max_expand_gb=1e9, max_ratio=1e18)
    check_expansion(archive, tmp_path, free // 2, unlimited)
    with pytest.raises(ExtractError, match="GB are free in") as err:
        check_expansion(archive, tmp_path, free + (1 << 30), unlimited)
    assert str(archive) in str(err.value)


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


def test_existing_output_replaced_only_when_sartm_extracted_it(tmp_path, archive_makers):
    archive = archive_makers["zip"](tree(tmp_path), tmp_path / "a.zip")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    with pytest.raises(DataError, match="not written by sartm"):
        safe_extract(archive, mine, progress=False)
    with pytest.raises(DataError, match="not written by sartm .* even with --force") as err:
        safe_extract(archive, mine, force=True, progress=False)
    assert str(mine) in str(err.value)
    assert (
        all_paths(mine) == {"thesis.tex"} and (mine / "thesis.tex").read_text() == "years of work"
    )

    out = safe_extract(archive, tmp_path / "out", progress=False)
    (out / "old.txt").write_text("old")
    with pytest.raises(DataError, match="already exists; use --force"):
        safe_extract(archive, out, progress=False)
    safe_extract(archive, out, force=True, progress=False)
    assert not (out / "old.txt").exists() and (out / "top.txt").exists()
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name or ".old-" in p.name]

    empty = tmp_path / "empty"
    empty.mkdir()
    assert (safe_extract(archive, empty, progress=False) / "top.txt").exists()


def test_output_holding_the_archive_refused(tmp_path, archive_makers):
    folder = tmp_path / "downloads"
    folder.mkdir()
    archive = archive_makers["zip"](tree(tmp_path), folder / "a.zip")
    with pytest.raises(DataError, match="overlaps the archive"):
        safe_extract(archive, folder, force=True, progress=False)
    assert archive.is_file() and all_paths(folder) == {"a.zip"}


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


def test_cli_limits_and_force(tmp_path, archive_makers):
    runner = CliRunner()
    archive = bomb(tmp_path, "zip")
    out = tmp_path / "o"
    result = runner.invoke(cli, ["data", "extract", str(archive), "--out", str(out)])
    assert result.exit_code == 1 and "--max-ratio" in result.output and not out.exists()
    result = runner.invoke(
        cli, ["data", "extract", str(archive), "--out", str(out), "--max-ratio", "100000"]
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        cli, ["data", "extract", str(archive), "--out", str(out), "--max-expand-gb", "0.001"]
    )
    assert result.exit_code == 1 and "already exists; use --force" in result.output
    args = ["data", "extract", str(archive), "--out", str(out), "--force", "--max-expand-gb"]
    result = runner.invoke(cli, [*args, "0.001"])
    assert result.exit_code == 1 and "over the limit of 0.001 GB" in result.output
    assert (out / "zeros.bin").stat().st_size == BOMB  # the refused run left the old copy

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    small = archive_makers["zip"](tree(tmp_path), tmp_path / "small.zip")
    result = runner.invoke(cli, ["data", "extract", str(small), "--out", str(mine), "--force"])
    assert result.exit_code == 1 and "even with --force" in result.output
    assert str(mine) in result.output and len(result.output.strip().splitlines()) == 1
    assert all_paths(mine) == {"notes.txt"}
