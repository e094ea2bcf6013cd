"""Safe archive extraction (zip, tar, tar.gz/bz2/xz) that never writes outside its target.

Every entry is checked before anything is written: absolute names, `..` components, device files,
FIFOs and links (symbolic or hard: no supported dataset ships them, so they are refused outright
rather than resolved) are refused, and so are names given twice (a later entry could write
through an earlier one) or a file used as a folder. The archive may expand to at most `Limits`
(total size, and the expansion ratio beyond RATIO_FLOOR; the CLI's --max-expand-gb and
--max-ratio raise them) and must fit the free disk space. Tar files additionally go through the
standard library's `filter="data"`. `safe_extract` extracts into a temporary sibling folder and
renames it into place only on success, so a failed or interrupted extraction leaves no
half-written dataset behind; it replaces only a folder it extracted itself (sartm-source.json).
"""

from __future__ import annotations

import json
import lzma
import posixpath
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from sartm import __version__
from sartm.data.common import SOURCE_NAME, DataError, check_apart, check_replaceable, replace_dir

_CHUNK = 1 << 20
DEFAULT_MAX_EXPAND_GB = 50.0  # the largest supported dataset expands to a few GB
DEFAULT_MAX_RATIO = 100.0  # PNG datasets expand about 1x; zeros expand 1000x
RATIO_FLOOR = 32 << 20  # smaller outputs are harmless whatever their ratio (tiny text archives)
# What reading damaged or truncated compressed data raises.
_DAMAGE = (zlib.error, lzma.LZMAError, EOFError, OSError, NotImplementedError)


class ExtractError(DataError):
    """An archive that cannot be extracted safely; the message names the archive and the entry."""


@dataclass(frozen=True)
class Limits:
    """How far an archive may expand before it is refused as a decompression bomb."""

    max_expand_gb: float = DEFAULT_MAX_EXPAND_GB
    max_ratio: float = DEFAULT_MAX_RATIO


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


def _check_entries(archive: Path, entries: list[tuple[str, str, bool]]) -> None:
    """Refuse a name given twice (but a folder) and an entry below a file: (name, rel, is_dir)."""
    seen: dict[str, bool] = {}
    for name, rel, is_dir in entries:
        if rel in seen and not (is_dir and seen[rel]):
            raise ExtractError(f"{archive}: entry {name!r} appears twice; refusing to extract")
        seen[rel] = is_dir
    for name, rel, _ in entries:
        parent = posixpath.dirname(rel)
        while parent:
            if seen.get(parent) is False:
                raise ExtractError(
                    f"{archive}: entry {name!r} lies below {parent!r}, which is a file; refusing"
                )
            parent = posixpath.dirname(parent)


def _refuse_link(archive: Path, name: str) -> None:
    raise ExtractError(
        f"{archive}: entry {name!r} is a link; archives with links are refused (no supported "
        f"dataset ships them)"
    )


def _zip_mode(info: zipfile.ZipInfo) -> int:
    """The Unix file mode stored by zips made on Unix (0 when the archive does not say)."""
    return (info.external_attr >> 16) & 0xFFFF if info.create_system == 3 else 0


def check_expansion(archive: Path, dest: Path, total: int, limits: Limits) -> None:
    """Before writing: refuse `total` uncompressed bytes over the limits or the free space."""
    size = max(Path(archive).stat().st_size, 1)
    if total > limits.max_expand_gb * 1e9:
        raise ExtractError(
            f"{archive}: expands to {total / 1e9:.2f} GB, over the limit of "
            f"{limits.max_expand_gb:g} GB; if you trust it, raise the limit with --max-expand-gb"
        )
    if total > RATIO_FLOOR and total > limits.max_ratio * size:
        raise ExtractError(
            f"{archive}: expands {total / size:.0f}-fold ({size} bytes to {total / 1e9:.2f} GB), "
            f"over the limit of {limits.max_ratio:g}-fold (a decompression bomb?); if you trust "
            f"it, raise the limit with --max-ratio"
        )
    free = shutil.disk_usage(dest).free
    if total > free:
        raise ExtractError(
            f"{archive}: needs {total / 1e9:.2f} GB uncompressed but only {free / 1e9:.2f} GB "
            f"are free in {dest}"
        )


def _extract_zip(archive: Path, dest: Path, *, progress: bool, limits: Limits) -> int:
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ExtractError(f"{archive}: unreadable zip archive ({exc})") from exc
    with zf:
        # Check every entry before writing anything.
        checked: list[zipfile.ZipInfo] = []
        entries: list[tuple[str, str, bool]] = []
        for info in zf.infolist():
            rel = _checked_name(archive, info.filename)
            if _root_entry(archive, info.filename, rel, is_dir=info.is_dir()):
                continue
            mode = _zip_mode(info)
            if stat.S_ISLNK(mode):
                _refuse_link(archive, info.filename)
            if stat.S_IFMT(mode) in (stat.S_IFCHR, stat.S_IFBLK, stat.S_IFIFO, stat.S_IFSOCK):
                raise ExtractError(
                    f"{archive}: entry {info.filename!r} is a device or special file"
                )
            checked.append(info)
            entries.append((info.filename, rel, info.is_dir()))
        _check_entries(archive, entries)
        check_expansion(archive, dest, sum(i.file_size for i in checked), limits)
        for info, (_, rel, _) in tqdm(
            list(zip(checked, entries, strict=True)),
            desc=f"extract {archive.name}",
            unit="file",
            disable=not progress,
        ):
            target = dest / rel
            try:
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                # zipfile stops at the declared size, so the checked total bounds what is written
                with zf.open(info) as src, target.open("xb") as dst:
                    shutil.copyfileobj(src, dst, _CHUNK)
            except FileExistsError as exc:  # names equal on a case-insensitive file system
                raise ExtractError(f"{archive}: entry {info.filename!r} appears twice") from exc
            except (zipfile.BadZipFile, RuntimeError, *_DAMAGE) as exc:
                # CRC errors, encrypted entries, truncated data
                raise ExtractError(
                    f"{archive}: entry {info.filename!r} is damaged ({exc})"
                ) from exc
        return len(checked)


def _extract_tar(archive: Path, dest: Path, *, progress: bool, limits: Limits) -> int:
    try:
        with tarfile.open(archive, mode="r:*") as tar:
            tar.errorlevel = 2  # every problem raises instead of being skipped
            wanted: list[tarfile.TarInfo] = []
            entries: list[tuple[str, str, bool]] = []
            for member in tar.getmembers():  # reads the whole archive once, before writing
                rel = _checked_name(archive, member.name)
                if _root_entry(archive, member.name, rel, is_dir=member.isdir()):
                    continue
                if member.issym() or member.islnk():
                    _refuse_link(archive, member.name)
                if not (member.isreg() or member.isdir()):
                    raise ExtractError(
                        f"{archive}: entry {member.name!r} is a device or special file"
                    )
                wanted.append(member)
                entries.append((member.name, rel, member.isdir()))
            _check_entries(archive, entries)
            check_expansion(archive, dest, sum(m.size for m in wanted if m.isreg()), limits)
            members = tqdm(
                wanted, desc=f"extract {archive.name}", unit="file", disable=not progress
            )
            # The standard library's own checks (outside paths, permissions) on top of ours.
            tar.extractall(dest, members=members, filter="data")
    except tarfile.FilterError as exc:
        raise ExtractError(f"{archive}: unsafe entry refused ({exc})") from exc
    except (tarfile.TarError, *_DAMAGE) as exc:
        raise ExtractError(f"{archive}: damaged or truncated tar archive ({exc})") from exc
    return len(wanted)


def extract_into(
    archive: Path, dest: Path, *, progress: bool = True, limits: Limits = Limits()
) -> int:
    """Extract `archive` into the existing folder `dest` with every safety check; returns the
    number of entries written. Not atomic on its own: callers extract into a temporary folder."""
    archive, dest = Path(archive), Path(dest)
    kind = archive_kind(archive)
    dest.mkdir(parents=True, exist_ok=True)
    if kind == "zip":
        return _extract_zip(archive, dest, progress=progress, limits=limits)
    return _extract_tar(archive, dest, progress=progress, limits=limits)


def safe_extract(
    archive: Path,
    out: Path,
    *,
    force: bool = False,
    progress: bool = True,
    limits: Limits = Limits(),
) -> Path:
    """Extract `archive` so that its contents become the folder `out`, atomically.

    The archive is unpacked into a temporary sibling of `out` and renamed into place only when
    every entry has been written; on any error (or an interrupt) the temporary folder is removed.
    An existing `out` is replaced only with `force` and only when sartm extracted it (its
    sartm-source.json marker); a folder holding the archive is refused.
    """
    archive, out = Path(archive), Path(out)
    archive_kind(archive)  # fail before creating anything
    check_apart(archive, out, source_is="the archive", out_is="--out")
    check_replaceable(out, force=force, marker=SOURCE_NAME)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    tmp.chmod(0o755)  # mkdtemp's 0700 would make the extracted folder private
    try:
        extract_into(archive, tmp, progress=progress, limits=limits)
        record = {"archive": archive.name, "created_by": f"sartm {__version__}"}
        (tmp / SOURCE_NAME).write_text(json.dumps(record, indent=2))
        replace_dir(tmp, out, force=force, marker=SOURCE_NAME)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
