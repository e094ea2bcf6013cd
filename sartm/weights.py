"""SAM2 checkpoints on disk: the official URLs, download with verification, the local cache.

Files live in `weights/` (relative to the project root) or in `$SARTM_WEIGHTS`, named
`<name>.pt` as Meta names them, each with a `<name>.pt.sha256` file recording the SHA-256 seen at
download (`sha256sum` format). Meta publishes no checksums; the expected values below are those
of the Hugging Face copies (docs/method.md section 1), so a mismatch is a WARNING naming both hashes,
not a failure. `sam2_hiera_large` has no recorded hash: the one seen at download is recorded.
A download streams into `<name>.pt.part`, is hashed and checked to be a SAM2 checkpoint of the
expected size, and only then renamed into place.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from urllib.request import urlopen

from filelock import FileLock
from tqdm.auto import tqdm

from sartm.errors import SartmError

ENV_VAR = "SARTM_WEIGHTS"
DEFAULT_DIR = Path("weights")
CHUNK = 1 << 20
MIRROR = "Hugging Face mirror"
_BASE = "https://dl.fbaipublicfiles.com/segment_anything_2"


class WeightsError(SartmError, RuntimeError):
    """A checkpoint that cannot be found, fetched or trusted; the message says which and why."""


class HashMismatchWarning(UserWarning):
    """The file's SHA-256 differs from a mirror's recorded hash (Meta publishes none)."""


@dataclass(frozen=True)
class WeightsEntry:
    name: str  # Meta's file stem, e.g. sam2_hiera_base_plus
    backbone: str  # the model.backbone value, e.g. sam2_hiera_b+
    url: str
    sha256: str | None
    sha256_source: str | None  # where the expected hash comes from: MIRROR, "official", None
    approx_mb: int

    @property
    def filename(self) -> str:
        return f"{self.name}.pt"


def _entries() -> dict[str, WeightsEntry]:
    sizes = {"tiny": "t", "small": "s", "base_plus": "b+", "large": "l"}
    approx = {"tiny": 156, "small": 184, "base_plus": 324, "large": 898}
    hashes = {
        "sam2_hiera_tiny": "65b50056e05bcb13694174f51bb6da89c894b57b75ccdf0ba6352c597c5d1125",
        "sam2_hiera_small": "95949964d4e548409021d47b22712d5f1abf2564cc0c3c765ba599a24ac7dce3",
        "sam2_hiera_base_plus": "d0bb7f236400a49669ffdd1be617959a8b1d1065081789d7bbff88eded3a8071",
        "sam2.1_hiera_tiny": "7402e0d864fa82708a20fbd15bc84245c2f26dff0eb43a4b5b93452deb34be69",
        "sam2.1_hiera_small": "6d1aa6f30de5c92224f8172114de081d104bbd23dd9dc5c58996f0cad5dc4d38",
        "sam2.1_hiera_base_plus": "a2345aede8715ab1d5d31b4a509fb160c5a4af1970f199d9054ccfb746c004c5",
    }
    out = {}
    for family, release in (("sam2", "072824"), ("sam2.1", "092824")):
        for long, short in sizes.items():
            name = f"{family}_hiera_{long}"
            out[name] = WeightsEntry(
                name=name,
                backbone=f"{family}_hiera_{short}",
                url=f"{_BASE}/{release}/{name}.pt",
                sha256=hashes.get(name),
                sha256_source=MIRROR if name in hashes else None,
                approx_mb=approx[long],
            )
    return out


WEIGHTS: dict[str, WeightsEntry] = _entries()


def entry(name: str) -> WeightsEntry:
    """A checkpoint by its file name (`sam2_hiera_base_plus`) or backbone (`sam2_hiera_b+`)."""
    if name in WEIGHTS:
        return WEIGHTS[name]
    for e in WEIGHTS.values():
        if e.backbone == name:
            return e
    raise WeightsError(f"unknown checkpoint {name!r}; known: {', '.join(WEIGHTS)}")


def weights_for_backbone(backbone: str) -> str:
    return entry(backbone).name


def weights_dir() -> Path:
    return Path(os.environ.get(ENV_VAR) or DEFAULT_DIR)


def resolve_checkpoint(name_or_path: str | Path, *, directory: Path | None = None) -> Path:
    """A local checkpoint path, or a known name found in the weights folder."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    try:
        e = entry(str(name_or_path))
    except WeightsError:
        hint = ""
        if "stand-in" in path.parts:  # the demo's synthetic SAM2, made by the pipeline itself
            hint = "; make the stand-in with `sartm pretrain --preset <preset>` (or snakemake)"
        raise WeightsError(
            f"checkpoint {str(name_or_path)!r} is neither a file nor a known name "
            f"({', '.join(WEIGHTS)}){hint}"
        ) from None
    cached = (directory or weights_dir()) / e.filename
    if not cached.is_file():
        raise WeightsError(
            f"checkpoint {e.name} is not in {cached.parent}/ (set ${ENV_VAR} to another folder); "
            f"fetch it with `sartm weights download {e.name}`"
        )
    return cached


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def recorded_sha256(path: Path) -> str | None:
    side = _sidecar(path)
    return side.read_text().split()[0] if side.is_file() else None


@dataclass(frozen=True)
class Verification:
    """The outcome of checking one file against what is known about it."""

    path: Path
    sha256: str
    status: str  # ok | recorded | unverified | mirror-mismatch (warning) | mismatch | changed
    message: str

    @property
    def failed(self) -> bool:
        return self.status in ("mismatch", "changed")


def judge(e: WeightsEntry, path: Path, actual: str, recorded: str | None) -> Verification:
    """What a file's SHA-256 means, given the entry's expected hash and the one recorded."""
    if recorded is not None and recorded != actual:
        return Verification(
            path,
            actual,
            "changed",
            f"{path}: SHA-256 {actual} differs from the {recorded} recorded at "
            "download: the file changed; download it again",
        )
    if e.sha256 is None:
        if recorded is None:
            return Verification(
                path,
                actual,
                "unverified",
                f"{path}: no published or recorded hash; SHA-256 is {actual}",
            )
        return Verification(
            path, actual, "recorded", f"{path}: matches the SHA-256 recorded at download ({actual})"
        )
    if e.sha256 == actual:
        return Verification(path, actual, "ok", f"{path}: SHA-256 matches ({e.sha256_source})")
    if e.sha256_source != MIRROR:  # a publisher's own hash: a mismatch is a corrupt file
        return Verification(
            path,
            actual,
            "mismatch",
            f"{path}: SHA-256 {actual} differs from the published {e.sha256}",
        )
    return Verification(
        path,
        actual,
        "mirror-mismatch",
        f"{path}: SHA-256 {actual} differs from the {e.sha256_source}'s {e.sha256}"
        " (Meta publishes no hash, so this is only a warning)",
    )


def verify(name: str, *, directory: Path | None = None) -> Verification:
    """Check a cached checkpoint's SHA-256 against the mirror's hash and the recorded one."""
    e = entry(name)
    path = (directory or weights_dir()) / e.filename
    if not path.is_file():
        raise WeightsError(f"{path}: not downloaded (`sartm weights download {e.name}`)")
    result = judge(e, path, sha256_of(path), recorded_sha256(path))
    if result.status == "mirror-mismatch":
        warnings.warn(result.message, HashMismatchWarning, stacklevel=2)
    return result


def _check_structure(e: WeightsEntry, path: Path, shown: Path) -> None:
    """The file must be a SAM2 checkpoint whose image encoder has the entry's size."""
    from sartm.model.backbones import architecture
    from sartm.model.checkpoint import CheckpointError, architecture_of_state, read_sam2_checkpoint

    try:
        found = architecture_of_state(read_sam2_checkpoint(path), source=str(shown))
    except CheckpointError as exc:
        raise WeightsError(f"downloaded {e.url}: {exc}") from exc
    if found != architecture(e.backbone):
        raise WeightsError(
            f"downloaded {e.url}: image encoder ({found.describe()}) is not {e.backbone}"
        )


def download(
    name: str, *, directory: Path | None = None, force: bool = False, progress: bool = True
) -> Verification:
    """Fetch a checkpoint into the weights folder (skipped when already there, unless `force`)."""
    e = entry(name)
    folder = directory or weights_dir()
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / e.filename
    with FileLock(str(dest) + ".lock"):
        if dest.is_file() and not force:
            return verify(e.name, directory=folder)
        part = dest.with_name(dest.name + ".part")
        try:
            actual = _stream(e.url, part, progress=progress)
            result = judge(e, dest, actual, None)
            if result.failed:
                raise WeightsError(result.message)
            if result.status == "mirror-mismatch":
                warnings.warn(result.message, HashMismatchWarning, stacklevel=2)
            _check_structure(e, part, dest)
            _sidecar(dest).write_text(f"{actual}  {e.filename}\n")
            os.replace(part, dest)
        finally:
            part.unlink(missing_ok=True)
    return result


def _stream(url: str, part: Path, *, progress: bool) -> str:
    """Copy the URL into `part` in chunks; returns the SHA-256; refuses a short download."""
    digest = hashlib.sha256()
    received = 0
    try:
        with urlopen(url, timeout=60) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length else None
            with (
                open(part, "wb") as f,
                tqdm(
                    total=total,
                    unit="B",
                    unit_scale=True,
                    desc=part.name.removesuffix(".part"),
                    disable=not progress,
                ) as bar,
            ):
                while chunk := response.read(CHUNK):
                    f.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
                f.flush()
                os.fsync(f.fileno())
    except OSError as exc:
        raise WeightsError(f"{url}: download failed ({exc})") from exc
    if total is not None and received != total:
        raise WeightsError(f"{url}: download stopped after {received} of {total} bytes")
    return digest.hexdigest()
