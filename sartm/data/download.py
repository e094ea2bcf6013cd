"""Fetch a dataset's official archives, verify them, and extract them into data/raw/<dataset>/.

All published locations and digests live in each dataset's entry (sartm.data.builtin, its
`mirrors`). Verification uses the
digest published by the distributor where there is one (whatever its kind: the FMB mirror
publishes md5); where none is published (MFNet, PST900) the SHA-256 seen on first use is recorded
in `data/archives/<dataset>/SHA256SUMS`, once the archive has extracted into the dataset's layout
(a damaged first copy records nothing), and every later use is checked against it. Archives the
user already has are passed with `--archive` and go through the same checks.

Plain HTTP downloads stream into `<name>.part` with a progress bar, resume from a partial file
when the server supports ranges, and are renamed into place only when complete. Google Drive
links go through `gdown`; if Drive refuses (quota, changed link), the error carries exact manual
instructions. Extraction is safe (see extract.py) and atomic: the archives are unpacked and
normalised to the dataset's original layout in a temporary folder beside data/raw/<dataset>/,
which is renamed into place only on success; an existing raw folder is replaced only with
`force` and only when sartm extracted it (its sartm-source.json).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from sartm import __version__, paths
from sartm.data import builtin
from sartm.data.builtin import Mirror
from sartm.data.common import (
    SOURCE_NAME,
    DataError,
    check_apart,
    check_replaceable,
    replace_dir,
    written_by_sartm,
)
from sartm.data.extract import Limits, extract_into
from sartm.data.layouts import assemble_raw

_CHUNK = 1 << 20
SUMS_NAME = "SHA256SUMS"
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")


class DownloadError(DataError):
    """A download that failed or cannot be automated; the message says what to do by hand."""


class DigestError(DataError):
    """An archive whose digest differs from the expected one (the message shows both)."""


def mirrors(dataset: str) -> tuple[Mirror, ...]:
    """The published locations of a built-in dataset (its entry's mirrors, first = default)."""
    known = [n for n in builtin.names() if builtin.builtin(n).mirrors]
    if dataset not in known:
        raise DataError(f"no download source for {dataset!r}; known: {', '.join(known)}")
    return builtin.builtin(dataset).mirrors


# --- the network boundary ---------------------------------------------------------------------


def open_url(url: str, *, headers: dict[str, str], timeout: float = 60.0) -> Any:
    """The one function that opens a URL (an HTTP response: status, headers, read())."""
    request = urllib.request.Request(url, headers=headers)
    return urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 - the URLs come from the mirrors


def _drive_id(url: str) -> str:
    match = re.search(r"/(?:d|folders)/([\w-]+)", url) or re.search(r"[?&]id=([\w-]+)", url)
    if match is None:
        raise DownloadError(f"{url}: not a Google Drive link")
    return match.group(1)


def http_download(url: str, target: Path, *, progress: bool = True) -> Path:
    """Stream `url` to `target` via `<target>.part`, resuming a partial file where possible."""
    part = target.with_name(target.name + ".part")
    target.parent.mkdir(parents=True, exist_ok=True)
    for _attempt in range(2):
        start = part.stat().st_size if part.is_file() else 0
        headers = {"User-Agent": f"sartm/{__version__}"}
        if start:
            headers["Range"] = f"bytes={start}-"
        try:
            response = open_url(url, headers=headers)
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and start:  # the partial file does not fit the remote file
                part.unlink()
                continue
            raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            raise DownloadError(f"{url}: cannot connect ({exc})") from exc
        break
    with response:
        resumed = response.headers.get("Content-Range", "").startswith(f"bytes {start}-")
        if start and (response.status != 206 or not resumed):
            start = 0  # the server ignored the range (or sent another one): start over
        length = response.headers.get("Content-Length")
        total = start + int(length) if length is not None else None
        try:
            with (
                part.open("ab" if start else "wb") as fh,
                tqdm(
                    total=total,
                    initial=start,
                    unit="B",
                    unit_scale=True,
                    unit_divisor=1024,
                    desc=target.name,
                    disable=not progress,
                ) as bar,
            ):
                while chunk := response.read(_CHUNK):
                    fh.write(chunk)
                    bar.update(len(chunk))
        except (OSError, http.client.HTTPException) as exc:  # dropped: reset, IncompleteRead
            raise DownloadError(
                f"{url}: interrupted after {part.stat().st_size} bytes ({exc}); run the same "
                f"command again to resume from {part}"
            ) from exc
    size = part.stat().st_size
    if total is not None and size != total:
        raise DownloadError(
            f"{url}: incomplete download ({size} of {total} bytes); run the same command again "
            f"to resume from {part}"
        )
    os.replace(part, target)
    return target


def gdrive_download(url: str, target: Path) -> Path:
    """A Google Drive file via gdown (which resumes and renames into place itself)."""
    import gdown

    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        result = gdown.download(id=_drive_id(url), output=str(target), quiet=False, resume=True)
    except Exception as exc:  # gdown raises many kinds (quota, HTML page, network)
        raise DownloadError(f"{url}: Google Drive download failed ({exc})") from exc
    if not result or not target.is_file():
        raise DownloadError(f"{url}: Google Drive download failed (no file was written)")
    return target


def gdrive_folder_download(url: str, folder: Path, filename: str) -> list[Path]:
    """Files of a Google Drive folder: `filename`, or every archive in it when filename is '*'."""
    import gdown

    try:
        listing = gdown.download_folder(id=_drive_id(url), skip_download=True, quiet=True)
    except Exception as exc:
        raise DownloadError(f"{url}: cannot list the Google Drive folder ({exc})") from exc
    wanted = [
        entry
        for entry in listing or []
        if (
            Path(entry.path).name == filename
            if filename != "*"
            else Path(entry.path).name.lower().endswith(ARCHIVE_SUFFIXES)
        )
    ]
    if not wanted:
        what = filename if filename != "*" else "archive"
        raise DownloadError(f"{url}: the Google Drive folder has no {what}")
    return [
        gdrive_download(
            f"https://drive.google.com/uc?id={entry.id}", folder / Path(entry.path).name
        )
        for entry in wanted
    ]


# --- digests ----------------------------------------------------------------------------------


def file_digests(
    path: Path, algorithms: Sequence[str] = ("sha256",), *, progress: bool = False
) -> dict[str, str]:
    """Hex digests of a file, every algorithm in one streamed pass."""
    hashers = {name: hashlib.new(name) for name in algorithms}
    with (
        path.open("rb") as fh,
        tqdm(
            total=path.stat().st_size,
            unit="B",
            unit_scale=True,
            desc=f"verify {path.name}",
            disable=not progress,
        ) as bar,
    ):
        while chunk := fh.read(_CHUNK):
            for hasher in hashers.values():
                hasher.update(chunk)
            bar.update(len(chunk))
    return {name: h.hexdigest() for name, h in hashers.items()}


def published_digest(dataset: str, filename: str) -> tuple[str, str, str] | None:
    """(algorithm, hex, url) published for this archive name, if any distributor publishes one."""
    entry = builtin.BUILTIN.get(dataset)
    for mirror in entry.mirrors if entry else ():
        for remote in mirror.files:
            if remote.filename == filename and remote.digest:
                algorithm, _, hexdigest = remote.digest.partition(":")
                return algorithm, hexdigest.lower(), remote.url
    return None


def read_sums(path: Path) -> dict[str, str]:
    """`sha256sum`-style lines (`<hex>  <name>`) -> {name: hex}."""
    if not path.is_file():
        return {}
    sums: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        hexdigest, sep, name = line.partition("  ")
        if not sep or not re.fullmatch(r"[0-9a-f]{64}", hexdigest):
            raise DataError(f"{path}:{number}: not a `<sha256>  <file name>` line")
        sums[name.lstrip("*")] = hexdigest
    return sums


def _write_sums(path: Path, sums: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(f"{h}  {n}\n" for n, h in sorted(sums.items())))
    os.replace(tmp, path)


@dataclass
class Verified:
    path: Path
    sha256: str
    checks: list[str] = field(default_factory=list)  # what was checked, for the log
    first_use: bool = False  # no SHA-256 recorded yet: `record_first_use` once it extracted


def verify_archive(
    dataset: str, archive: Path, *, root: Path = paths.DATA, progress: bool = True
) -> Verified:
    """Check `archive` against its published digest, then against SHA256SUMS; a first-use
    SHA-256 is only noted (`first_use`): `record_first_use` writes it once the archive proved good."""
    archive = Path(archive)
    if not archive.is_file():
        raise DataError(f"{archive}: no such archive")
    published = published_digest(dataset, archive.name)
    algorithms = ["sha256"] + ([published[0]] if published and published[0] != "sha256" else [])
    found = file_digests(archive, algorithms, progress=progress)
    result = Verified(archive, found["sha256"])
    if published is not None:
        algorithm, expected, url = published
        if found[algorithm] != expected:
            raise DigestError(
                f"{archive}: {algorithm} mismatch: expected {expected} (published for {url}), "
                f"found {found[algorithm]}; the file is damaged or not the published one "
                f"(delete it and download again)"
            )
        result.checks.append(f"{algorithm} matches the published digest")
    sums_path = paths.archives_dir(dataset, root) / SUMS_NAME
    sums = read_sums(sums_path)
    recorded = sums.get(archive.name)
    if recorded is None:
        result.first_use = True
        result.checks.append("sha256 seen for the first time")
    elif recorded != found["sha256"]:
        raise DigestError(
            f"{archive}: sha256 mismatch: expected {recorded} (recorded in {sums_path} on first "
            f"use), found {found['sha256']}; if this is a deliberate new copy, remove its line "
            f"from {sums_path}"
        )
    else:
        result.checks.append(f"sha256 matches {sums_path}")
    return result


def record_first_use(dataset: str, verified: Sequence[Verified], *, root: Path) -> list[str]:
    """Write the first-use SHA-256s into SHA256SUMS (call only after the archives extracted)."""
    sums_path = paths.archives_dir(dataset, root) / SUMS_NAME
    new = [v for v in verified if v.first_use]
    if not new:
        return []
    sums = read_sums(sums_path)
    sums.update({v.path.name: v.sha256 for v in new})
    _write_sums(sums_path, sums)
    return [f"{v.path}: sha256 recorded in {sums_path} (first use)" for v in new]


# --- fetch, extract, the whole command ----------------------------------------------------------


def manual_instructions(dataset: str) -> str:
    """Exact steps to get the archives by hand, for every known location."""
    lines = [f"To get {dataset} by hand:"]
    for mirror in mirrors(dataset):
        names = ", ".join(
            r.filename if r.filename != "*" else "the archive(s)" for r in mirror.files
        )
        lines.append(f"  - {mirror.name}: {mirror.note}")
        lines.append(f"    page: {mirror.page}")
        for remote in mirror.files:
            lines.append(
                f"    {remote.filename if remote.filename != '*' else 'files'}: {remote.url}"
                + (f" ({remote.digest})" if remote.digest else "")
            )
        lines.append(f"    download {names}, then run:")
        options = " ".join(
            f"--archive PATH/TO/{r.filename if r.filename != '*' else 'ARCHIVE'}"
            for r in mirror.files
        )
        lines.append(f"      sartm data download {dataset} {options}")
    return "\n".join(lines)


def _mirror(dataset: str, name: str | None) -> Mirror:
    published = mirrors(dataset)
    if name is None:
        return published[0]
    for mirror in published:
        if mirror.name == name:
            return mirror
    raise DataError(
        f"{dataset}: unknown mirror {name!r}; known: {', '.join(m.name for m in published)}"
    )


def fetch(
    dataset: str, *, root: Path = paths.DATA, mirror: str | None = None, progress: bool = True
) -> list[Path]:
    """Download the archives of one mirror into data/archives/<dataset>/ (kept files reused)."""
    chosen = _mirror(dataset, mirror)
    folder = paths.archives_dir(dataset, root)
    fetched: list[Path] = []
    try:
        for remote in chosen.files:
            target = folder / remote.filename
            if remote.filename != "*" and target.is_file():
                fetched.append(target)  # complete: partial downloads never carry the final name
                continue
            if remote.kind == "page":
                raise DownloadError(
                    f"{remote.url}: a share page that cannot be fetched automatically"
                )
            if remote.kind == "http":
                fetched.append(http_download(remote.url, target, progress=progress))
            elif remote.kind == "gdrive":
                fetched.append(gdrive_download(remote.url, target))
            elif remote.kind == "gdrive-folder":
                fetched.extend(gdrive_folder_download(remote.url, folder, remote.filename))
            else:
                raise DownloadError(f"{remote.url}: unknown source kind {remote.kind!r}")
    except DownloadError as exc:
        raise DownloadError(f"{exc}\n\n{manual_instructions(dataset)}") from exc
    return fetched


def extract_raw(
    dataset: str,
    archives: Sequence[Path],
    raw: Path,
    *,
    force: bool = False,
    progress: bool = True,
    digests: dict[str, str] | None = None,
    limits: Limits = Limits(),
) -> Path:
    """Unpack `archives` and normalise them to the original layout at `raw`, atomically (an
    existing `raw` is replaced only with `force` and only when sartm extracted it)."""
    raw = Path(raw)
    for archive in archives:
        check_apart(archive, raw, source_is="the archive", out_is="the raw folder")
    check_replaceable(raw, force=force, marker=SOURCE_NAME)
    raw.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{raw.name}.partial-", dir=raw.parent))
    try:
        trees = []
        for number, archive in enumerate(archives):
            tree = work / f"archive-{number}"
            extract_into(archive, tree, progress=progress, limits=limits)
            trees.append((tree, Path(archive).name))
        assembled = work / "dataset"
        assemble_raw(dataset, trees, assembled)
        record = {
            "dataset": dataset,
            "archives": [
                {"name": Path(a).name, "sha256": (digests or {}).get(Path(a).name)}
                for a in archives
            ],
            "created_by": f"sartm {__version__}",
        }
        (assembled / SOURCE_NAME).write_text(json.dumps(record, indent=2))
        replace_dir(assembled, raw, force=force, marker=SOURCE_NAME)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return raw


@dataclass
class DownloadResult:
    dataset: str
    raw: Path
    already: bool
    verified: list[Verified] = field(default_factory=list)


def download(
    dataset: str,
    *,
    root: Path = paths.DATA,
    archives: Sequence[Path] = (),
    mirror: str | None = None,
    force: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
    limits: Limits = Limits(),
) -> DownloadResult:
    """Get `dataset` into data/raw/<dataset>/: fetch (or take `archives`), verify, extract."""
    root = Path(root)
    _mirror(dataset, mirror)  # unknown dataset / mirror: fail before doing anything
    raw = paths.raw_dir(dataset, root)
    if raw.exists() and not force and not (raw.is_dir() and not any(raw.iterdir())):
        if written_by_sartm(raw, SOURCE_NAME):
            log(f"{raw}: already extracted (use --force to extract again)")
        else:
            log(f"{raw}: already exists and was not extracted by sartm; left as it is")
        return DownloadResult(dataset, raw, already=True)
    check_replaceable(raw, force=force, marker=SOURCE_NAME)  # before fetching anything
    if archives:
        files = [Path(a) for a in archives]
        names = [f.name for f in files]
        if len(set(names)) != len(names):
            raise DataError(f"archives with the same file name given twice: {sorted(names)}")
    else:
        files = fetch(dataset, root=root, mirror=mirror, progress=progress)
    for file in files:
        check_apart(file, raw, source_is="the archive", out_is="the raw folder")
    verified = [verify_archive(dataset, f, root=root, progress=progress) for f in files]
    for item in verified:
        log(f"{item.path}: " + "; ".join(item.checks))
    try:
        extract_raw(
            dataset,
            files,
            raw,
            force=force,
            progress=progress,
            digests={v.path.name: v.sha256 for v in verified},
            limits=limits,
        )
    except DataError as exc:
        new = [str(v.path) for v in verified if v.first_use]
        if not new:
            raise
        raise type(exc)(
            f"{exc}; the sha256 of {', '.join(new)} was not recorded: if a download was cut "
            f"short, delete it and run the command again"
        ) from exc
    for line in record_first_use(dataset, verified, root=root):
        log(line)
    log(f"{raw}: extracted from {', '.join(f.name for f in files)}")
    return DownloadResult(dataset, raw, already=False, verified=verified)
