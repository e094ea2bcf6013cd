"""SAM2 base weights: Meta's official files, fetching and verifying them, reading them into SARTM.

The frozen foundation model every run starts from, not the project's own training checkpoints
(`last.pt`, `best.pt`, exports: `sartm.engine.run_checkpoint`).

Where the files live: `weights/` (relative to the project root) or `$SARTM_WEIGHTS`, named
`<name>.pt` as Meta names them, each with a `<name>.pt.sha256` file recording the SHA-256 seen at
download (`sha256sum` format). Meta publishes no checksums; the expected values below are those
of the Hugging Face copies (docs/method.md section 1), so a mismatch is a WARNING naming both
hashes, not a failure. `sam2_hiera_large` has no recorded hash: the one seen at download is
recorded. A download streams into `<name>.pt.part`, is hashed and checked to be a SAM2 checkpoint
of the expected size, and only then renamed into place.

What is in them: `torch.save({"model": state_dict})` with keys `image_encoder.*`,
`sam_mask_decoder.*`, `sam_prompt_encoder.*` and the video-memory modules SARTM does not use.
A file is always read with `weights_only=True`; anything else (no dict, no "model", a truncated
file, pickled objects that are not tensors) is a `CheckpointError` naming the file. The size is
read from the shapes: patch-embedding width, blocks per stage (stage changes are the blocks with a
`proj`), position-embedding grid, first window, FPN width. SAM 2 and SAM 2.1 have the same image
encoder; only the rest of a full checkpoint tells them apart (SAM 2.1 adds `no_obj_embed_spatial`
and a learned `obj_ptr_tpos_proj`). What a load into the SARTM modules used, skipped or missed is
a `LoadReport`.
"""

from __future__ import annotations

import hashlib
import os
import re
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.request import urlopen

from filelock import FileLock
from torch import Tensor
from tqdm.auto import tqdm

from sartm import torchfile
from sartm.errors import SartmError
from sartm.model.backbones import BACKBONES, Architecture, architecture

ENV_VAR = "SARTM_WEIGHTS"
DEFAULT_DIR = Path("weights")
CHUNK = 1 << 20
MIRROR = "Hugging Face mirror"
_BASE = "https://dl.fbaipublicfiles.com/segment_anything_2"
ENCODER_PREFIX = "image_encoder."
SARTM_PARTS = ("image_encoder", "sam_mask_decoder", "sam_prompt_encoder")
SAM21_MARKERS = ("no_obj_embed_spatial", "obj_ptr_tpos_proj.weight")
UNUSED_REASON = "SAM2 video-memory / tracking module, not used by SARTM"


class WeightsError(SartmError, RuntimeError):
    """A checkpoint that cannot be found, fetched or trusted; the message says which and why."""


class HashMismatchWarning(UserWarning):
    """The file's SHA-256 differs from a mirror's recorded hash (Meta publishes none)."""


class CheckpointError(SartmError, ValueError):
    """A checkpoint file or state dict that cannot be used; the message names it and why."""


# --- the official files and the local folder ------------------------------------------------------
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


# --- verification and download --------------------------------------------------------------------
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


# --- what a load into SARTM used ------------------------------------------------------------------
@dataclass
class LoadReport:
    """What a checkpoint load did. Parts loaded by different modules merge into one report."""

    loaded: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # key -> why it was left out on purpose
    missing: list[str] = field(default_factory=list)  # model weights the checkpoint lacked
    unexpected: list[str] = field(default_factory=list)  # checkpoint keys nobody used
    notes: list[str] = field(default_factory=list)
    source: str | None = None

    @property
    def ok(self) -> bool:
        return not self.missing and not self.unexpected

    def merge(self, other: LoadReport) -> LoadReport:
        """Union of both; a key that one part did not expect but another loaded or skipped on
        purpose is not unexpected."""
        loaded = list(dict.fromkeys(self.loaded + other.loaded))
        skipped = {k: v for k, v in {**self.skipped, **other.skipped}.items() if k not in loaded}
        used = set(loaded) | set(skipped)
        unexpected = [k for k in dict.fromkeys(self.unexpected + other.unexpected) if k not in used]
        return LoadReport(
            loaded=loaded,
            skipped=skipped,
            missing=list(dict.fromkeys(self.missing + other.missing)),
            unexpected=unexpected,
            notes=list(dict.fromkeys(self.notes + other.notes)),
            source=self.source or other.source,
        )

    def format(self, *, max_keys: int = 20) -> str:
        def by_part(keys) -> str:
            counts = Counter(k.split(".", 1)[0] for k in keys)
            return ", ".join(f"{p} {n}" for p, n in sorted(counts.items()))

        def listing(keys: list[str]) -> list[str]:
            lines = [f"    {k}" for k in keys[:max_keys]]
            if len(keys) > max_keys:
                lines.append(f"    ... and {len(keys) - max_keys} more")
            return lines

        lines = [f"checkpoint {self.source or '(state dict)'}: {'OK' if self.ok else 'NOT OK'}"]
        lines.append(f"  loaded     {len(self.loaded):5d} tensors ({by_part(self.loaded) or '-'})")
        lines.append(f"  skipped    {len(self.skipped):5d} tensors on purpose")
        for reason, n in Counter(self.skipped.values()).most_common():
            parts = by_part(k for k, r in self.skipped.items() if r == reason)
            lines.append(f"    {n:5d}: {reason} ({parts})")
        lines.append(f"  missing    {len(self.missing):5d}")
        lines += listing(self.missing)
        lines.append(f"  unexpected {len(self.unexpected):5d}")
        lines += listing(self.unexpected)
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


# --- reading a file, and telling its size ---------------------------------------------------------
def read_sam2_checkpoint(path: str | Path) -> dict[str, Tensor]:
    """The full state dict (`checkpoint["model"]`) of an official SAM2 checkpoint, on the CPU."""
    path = Path(path)
    obj = torchfile.load(path, CheckpointError, "SAM2 checkpoint")
    if not isinstance(obj, dict):
        raise CheckpointError(
            f"{path}: holds a {type(obj).__name__}, expected a dict {{'model': state_dict}}"
        )
    if "model" not in obj:
        keys = ", ".join(map(str, list(obj)[:8]))
        raise CheckpointError(
            f"{path}: no 'model' entry (top-level keys: {keys or 'none'}); official SAM2 "
            "checkpoints are {'model': state_dict}"
        )
    state = obj["model"]
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items()
    ):
        raise CheckpointError(f"{path}: 'model' is not a state dict of named tensors")
    if not any(k.startswith(ENCODER_PREFIX) for k in state):
        raise CheckpointError(f"{path}: no image_encoder.* weights: not a SAM2 checkpoint")
    torchfile.refuse_non_finite(state, path, CheckpointError)
    return state


def split_sam2_state(state: dict[str, Tensor]) -> tuple[dict[str, dict[str, Tensor]], LoadReport]:
    """The parts SARTM uses (`image_encoder`, `sam_mask_decoder`, `sam_prompt_encoder`, keys
    without their prefix) and a report listing everything else as skipped on purpose."""
    parts: dict[str, dict[str, Tensor]] = {p: {} for p in SARTM_PARTS}
    report = LoadReport()
    for key, value in state.items():
        head, _, rest = key.partition(".")
        if head in parts and rest:
            parts[head][rest] = value
        else:
            report.skipped[key] = UNUSED_REASON
    return parts, report


_BLOCK = re.compile(r"trunk\.blocks\.(\d+)\.")


def architecture_of_state(state: dict[str, Tensor], *, source: str = "state dict") -> Architecture:
    """The image-encoder hyper-parameters that the weights' shapes fix (keys with or without the
    `image_encoder.` prefix)."""
    enc = {k.removeprefix(ENCODER_PREFIX): v for k, v in state.items()}
    try:
        embed = enc["trunk.patch_embed.proj.weight"]
        pos, window = enc["trunk.pos_embed"], enc["trunk.pos_embed_window"]
        blocks = sorted({int(m.group(1)) for k in enc if (m := _BLOCK.match(k))})
        necks = [enc[k] for k in enc if re.fullmatch(r"neck\.convs\.\d+\.conv\.weight", k)]
    except KeyError as exc:
        raise CheckpointError(
            f"{source}: no SAM2 Hiera image encoder ({exc.args[0]} missing)"
        ) from exc
    if not blocks or not necks or blocks != list(range(len(blocks))):
        raise CheckpointError(f"{source}: incomplete SAM2 image encoder (blocks {blocks[:5]}...)")
    starts = [0] + [i for i in blocks if f"trunk.blocks.{i}.proj.weight" in enc]
    stages = tuple(b - a for a, b in zip(starts, starts[1:] + [len(blocks)]))
    return Architecture(
        embed_dim=int(embed.shape[0]),
        stages=stages,
        pos_embed_size=(int(pos.shape[-2]), int(pos.shape[-1])),
        first_window=int(window.shape[-1]),
        d_model=int(necks[0].shape[0]),
    )


def compatible_backbones(state: dict[str, Tensor], *, source: str = "state dict") -> list[str]:
    """Every backbone name whose image encoder has exactly these weight shapes."""
    found = architecture_of_state(state, source=source)
    return [name for name in BACKBONES if architecture(name) == found]


def describe_state(found: Architecture) -> str:
    names = [name for name in BACKBONES if architecture(name) == found]
    return " / ".join(names) if names else "unknown-size"


def detect_backbone(state: dict[str, Tensor], *, source: str = "state dict") -> str:
    """The backbone name of a SAM2 state dict (full checkpoint or image-encoder part).

    SAM 2 and SAM 2.1 share the image encoder: a full checkpoint is told apart by SAM 2.1's extra
    weights; an image-encoder-only state gives the SAM 2 name (both fit, see
    `compatible_backbones`)."""
    names = compatible_backbones(state, source=source)
    if not names:
        found = architecture_of_state(state, source=source)
        raise CheckpointError(
            f"{source}: image encoder ({found.describe()}) matches no known size "
            f"({', '.join(BACKBONES)})"
        )
    if len(names) == 1:
        return names[0]
    full = any(k.split(".", 1)[0] not in SARTM_PARTS for k in state)
    sam21 = any(k in state for k in SAM21_MARKERS)
    family = "sam2.1" if full and sam21 else "sam2"
    return next((n for n in names if BACKBONES[n].family == family), names[0])
