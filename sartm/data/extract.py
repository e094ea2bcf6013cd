"""Safe archive extraction (zip, tar, tar.gz/bz2/xz) that never writes outside its target.

Every entry is checked before it is written: absolute names, `..` components, device files,
FIFOs, and links (symbolic or hard) whose target leaves the target folder are refused, and no
entry may be written through a symlink that the archive itself created. Tar files additionally go
through the standard library's `filter="data"`; zip has no such filter, so the same checks are
done here. `safe_extract` extracts into a temporary sibling folder and renames it into place only
on success, so a failed or interrupted extraction leaves no half-written dataset behind.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import stat
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

from tqdm import tqdm

from sartm.data.common import DataError

_CHUNK = 1 << 20


class ExtractError(DataError):
    """An archive that cannot be extracted safely; the message names the archive and the entry."""


def archive_kind(path: Path) -> str:
    """'zip' or 'tar', from the file's content (not its name); other formats are refused."""
    path = Path(path)
    if not path.is_file():
        raise ExtractError(f"{path}: no such archive")
    if zipfile.is_zipfile(path):
        return "zip"
    if tarfile.is_tarfile(path):
        return "tar"
    raise ExtractError(f"{path}: not a zip or tar archive (supported: zip, tar, tar.gz/bz2/xz)")


def _checked_name(archive: Path, name: str) -> str:
    """The entry name as a safe relative POSIX path, or an error naming the entry."""
    unified = name.replace("\\", "/")  # zips written on Windows may use backslashes
    if not unified or unified.startswith("/") or (len(unified) > 1 and unified[1] == ":"):
        raise ExtractError(f"{archive}: entry {name!r} has an absolute path; refusing to extract")
    parts = [p for p in unified.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ExtractError(f"{archive}: entry {name!r} contains '..'; refusing to extract")
    return "/".join(parts)  # "" for the archive's own root folder ("./")


def _root_entry(archive: Path, name: str, rel: str, *, is_dir: bool) -> bool:
    """True for a harmless "./" folder entry; an empty name for anything else is an error."""
    if rel:
        return False
    if not is_dir:
        raise ExtractError(f"{archive}: entry {name!r} has an empty path")
    return True


def _check_link(archive: Path, name: str, target: str, *, hard: bool) -> None:
    """A link may only point inside the extraction folder (checked lexically, before writing)."""
    kind = "hard link" if hard else "symlink"
    if not target or target.startswith("/") or (len(target) > 1 and target[1] == ":"):
        raise ExtractError(f"{archive}: {kind} {name!r} -> {target!r} is absolute; refusing")
    # tar hard links name another entry (relative to the root); symlinks are relative to their dir
    joined = target if hard else posixpath.join(posixpath.dirname(name), target)
    resolved = posixpath.normpath(joined)
    if resolved == ".." or resolved.startswith("../"):
        raise ExtractError(
            f"{archive}: {kind} {name!r} -> {target!r} points outside the target; refusing"
        )


def _check_no_symlink_on_path(archive: Path, dest: Path, rel: str) -> None:
    """Refuse to write through a symlink created by an earlier entry (chained-link escapes)."""
    parent = posixpath.dirname(rel)
    if not parent:
        return
    expected = os.path.normpath(os.path.join(os.path.realpath(dest), parent))
    if os.path.realpath(os.path.join(dest, parent)) != expected:
        raise ExtractError(f"{archive}: entry {rel!r} would be written through a symlink; refusing")


def _zip_mode(info: zipfile.ZipInfo) -> int:
    """The Unix file mode stored by zips made on Unix (0 when the archive does not say)."""
    return (info.external_attr >> 16) & 0xFFFF if info.create_system == 3 else 0


def _check_space(archive: Path, dest: Path, needed: int) -> None:
    free = shutil.disk_usage(dest).free
    if needed > free:
        raise ExtractError(
            f"{archive}: needs {needed / 1e9:.2f} GB uncompressed but only {free / 1e9:.2f} GB "
            f"are free in {dest}"
        )


def _extract_zip(archive: Path, dest: Path, *, progress: bool) -> int:
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ExtractError(f"{archive}: unreadable zip archive ({exc})") from exc
    with zf:
        infos = zf.infolist()
        # Check every entry before writing anything.
        checked: list[tuple[zipfile.ZipInfo, str, int]] = []
        for info in infos:
            rel = _checked_name(archive, info.filename)
            if _root_entry(archive, info.filename, rel, is_dir=info.is_dir()):
                continue
            mode = _zip_mode(info)
            if mode and (
                stat.S_ISCHR(mode)
                or stat.S_ISBLK(mode)
                or stat.S_ISFIFO(mode)
                or stat.S_ISSOCK(mode)
            ):
                raise ExtractError(
                    f"{archive}: entry {info.filename!r} is a device or special file"
                )
            if stat.S_ISLNK(mode):
                target = zf.read(info).decode("utf-8", errors="replace")
                _check_link(archive, rel, target, hard=False)
            checked.append((info, rel, mode))
        _check_space(archive, dest, sum(i.file_size for i in infos))
        count = 0
        for info, rel, mode in tqdm(
            checked, desc=f"extract {archive.name}", unit="file", disable=not progress
        ):
            _check_no_symlink_on_path(archive, dest, rel)
            target = dest / rel
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.exists() or target.is_symlink():
                raise ExtractError(f"{archive}: entry {info.filename!r} appears twice")
            try:
                if stat.S_ISLNK(mode):
                    os.symlink(zf.read(info).decode("utf-8"), target)
                else:
                    with zf.open(info) as src, target.open("wb") as dst:
                        shutil.copyfileobj(src, dst, _CHUNK)
            except (zipfile.BadZipFile, RuntimeError, OSError, EOFError) as exc:
                # CRC errors, encrypted entries, truncated data
                raise ExtractError(
                    f"{archive}: entry {info.filename!r} is damaged ({exc})"
                ) from exc
            count += 1
        return count


def _extract_tar(archive: Path, dest: Path, *, progress: bool) -> int:
    count = 0

    def checks(member: tarfile.TarInfo, path: str) -> tarfile.TarInfo | None:
        nonlocal count
        rel = _checked_name(archive, member.name)
        if _root_entry(archive, member.name, rel, is_dir=member.isdir()):
            return None
        if member.ischr() or member.isblk() or member.isfifo() or member.isdev():
            raise ExtractError(f"{archive}: entry {member.name!r} is a device or special file")
        if member.issym() or member.islnk():
            _check_link(archive, rel, member.linkname, hard=member.islnk())
        _check_no_symlink_on_path(archive, dest, rel)
        count += 1
        # The standard library's own checks (outside paths, links, permissions) on top of ours.
        return tarfile.data_filter(member, path)

    try:
        with tarfile.open(archive, mode="r:*") as tar:
            tar.errorlevel = 2  # every problem raises instead of being skipped

            def members() -> Iterator[tarfile.TarInfo]:
                yield from tqdm(
                    tar, desc=f"extract {archive.name}", unit="file", disable=not progress
                )

            tar.extractall(dest, members=members(), filter=checks)
    except ExtractError:
        raise
    except tarfile.FilterError as exc:
        raise ExtractError(f"{archive}: unsafe entry refused ({exc})") from exc
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ExtractError(f"{archive}: damaged or truncated tar archive ({exc})") from exc
    return count


def extract_into(archive: Path, dest: Path, *, progress: bool = True) -> int:
    """Extract `archive` into the existing folder `dest` with every safety check; returns the
    number of entries written. Not atomic on its own: callers extract into a temporary folder."""
    archive, dest = Path(archive), Path(dest)
    kind = archive_kind(archive)
    dest.mkdir(parents=True, exist_ok=True)
    if kind == "zip":
        return _extract_zip(archive, dest, progress=progress)
    return _extract_tar(archive, dest, progress=progress)


def safe_extract(archive: Path, out: Path, *, force: bool = False, progress: bool = True) -> Path:
    """Extract `archive` so that its contents become the folder `out`, atomically.

    The archive is unpacked into a temporary sibling of `out` and renamed into place only when
    every entry has been written; on any error (or an interrupt) the temporary folder is removed.
    An existing `out` is an error unless `force`, and is replaced only after success.
    """
    archive, out = Path(archive), Path(out)
    archive_kind(archive)  # fail before creating anything
    if out.exists() and not force:
        raise ExtractError(f"{out}: already exists (use --force to replace it)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    tmp.chmod(0o755)  # mkdtemp's 0700 would make the extracted folder private
    try:
        extract_into(archive, tmp, progress=progress)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
