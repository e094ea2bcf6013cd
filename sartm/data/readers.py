"""Reading a dataset's ORIGINAL layout: find its samples, decode and check each image.

A built-in dataset's reader (sartm.data.builtin) is a `SplitLayout` (one folder per split, one
folder per modality inside it) or a `Reader` of its own functions (MFNet's split lists); `prepare`
uses either through the same members: index, decode, is_root, description, meta.

Every image is fully decoded and checked (readable, channel count) and the first problem stops
with an error naming the file. Labels must be class-index images: colour-rendered labels (FMB's
color/) are refused, never guessed from a palette. Thermal images stored as three equal grey
channels (FMB's Infrared) are accepted where the dataset ships them that way: the channels must
agree within `GRAY_TOLERANCE` grey levels and their rounded mean is kept.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from sartm.data.common import IGNORE_INDEX, DataError

GRAY_TOLERANCE = 3
PNG = (".png",)
_DECODE_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    zlib.error,
    struct.error,
    Image.DecompressionBombError,
)

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray]  # rgb HxWx3, thermal HxW, label HxW (uint8)


# --- decoding one image, with errors that name the file ------------------------------------


def decode_image(path: Path) -> tuple[str, np.ndarray]:
    """(PIL mode, array) of a fully decoded image; unreadable or truncated files are errors."""
    try:
        with Image.open(path) as im:
            im.load()
            return im.mode, np.array(im)
    except FileNotFoundError as exc:
        raise DataError(f"{path}: missing") from exc
    except _DECODE_ERRORS as exc:
        raise DataError(f"{path}: unreadable or truncated image ({exc})") from exc


def channel_count(mode: str) -> int:
    try:
        return Image.getmodebands(mode)
    except KeyError:
        return 0


def read_rgb(path: Path) -> np.ndarray:
    """An 8-bit 3-channel colour image (HxWx3 uint8); any other channel count is an error."""
    mode, array = decode_image(path)
    if mode != "RGB":
        raise DataError(
            f"{path}: RGB image must have 3 channels (mode RGB), found mode {mode} "
            f"({channel_count(mode)} channel(s))"
        )
    return array


def read_thermal(path: Path, *, gray_rgb: bool) -> np.ndarray:
    """An 8-bit single-channel thermal image (HxW uint8).

    gray_rgb: also accept a 3-channel image whose channels agree within GRAY_TOLERANCE (stored
    grey, as FMB's Infrared); their rounded mean is returned. A false-colour rendering is refused.
    """
    mode, array = decode_image(path)
    if mode == "L":
        return array
    if mode in ("I", "I;16", "I;16B", "F"):
        raise DataError(
            f"{path}: thermal image is {mode} (16-bit/float); expected 8-bit single channel "
            f"(PST900: use thermal/, not thermal_raw/)"
        )
    if mode == "RGB" and gray_rgb:
        wide = array.astype(np.int16)
        spread = int(np.abs(wide - wide[..., :1]).max())
        if spread > GRAY_TOLERANCE:
            raise DataError(
                f"{path}: thermal image has 3 channels that differ by up to {spread} grey levels; "
                f"expected grey stored as 3 equal channels (a false-colour rendering?)"
            )
        return np.rint(array.mean(axis=2)).astype(np.uint8)
    expected = "1 channel (or 3 equal grey channels)" if gray_rgb else "1 channel"
    raise DataError(
        f"{path}: thermal image must have {expected}, found mode {mode} "
        f"({channel_count(mode)} channel(s))"
    )


def read_label(path: Path) -> np.ndarray:
    """A class-index label map (HxW uint8): mode L or P (palette indices are the class ids)."""
    mode, array = decode_image(path)
    if mode in ("L", "P"):
        return array.astype(np.uint8, copy=False)
    if mode in ("I", "I;16", "I;16B"):
        top = int(array.max()) if array.size else 0
        if top > IGNORE_INDEX:
            raise DataError(
                f"{path}: label values up to {top} do not fit 8 bits (class ids expected)"
            )
        return array.astype(np.uint8)
    if mode in ("RGB", "RGBA"):
        raise DataError(
            f"{path}: label is a colour image (mode {mode}); labels must be single-channel "
            f"class-index images (FMB: use Label/, not color/)"
        )
    raise DataError(
        f"{path}: label must be a single-channel class-index image, found mode {mode} "
        f"({channel_count(mode)} channel(s))"
    )


# --- finding the samples ------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    split: str
    id: str
    files: dict[str, Path]  # modality (rgb, thermal, label) -> source file
    subset: str = ""


def list_images(folder: Path, exts: tuple[str, ...]) -> dict[str, Path]:
    """id -> file for the images in `folder` (dot files and non-image files are skipped)."""
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not path.is_file() or path.suffix.lower() not in exts:
            continue
        if path.stem in found:
            raise DataError(
                f"{path}: two files for sample id {path.stem!r} ({found[path.stem].name})"
            )
        found[path.stem] = path
    return found


def inside(root: Path, path: Path) -> Path:
    """`path`, refused when it resolves outside `root` (a symlink out): prepare reads nothing else."""
    real = path.resolve()
    if not real.is_relative_to(root.resolve()):
        raise DataError(
            f"{path}: a symlink that leads outside {root} (to {real}); prepare reads nothing "
            f"outside --raw: copy the file in, or pass the folder that holds it as --raw"
        )
    return path


def _check_unique(samples: list[Sample]) -> None:
    seen: dict[str, Sample] = {}
    for sample in samples:
        if sample.id in seen:
            first = seen[sample.id]
            raise DataError(
                f"{sample.files['rgb']}: duplicate sample id {sample.id!r} "
                f"(split {sample.split!r}; also {first.files['rgb']} in split {first.split!r})"
            )
        seen[sample.id] = sample


# --- the two kinds of reader ----------------------------------------------------------------------


@dataclass(frozen=True)
class Reader:
    """A layout read by functions of its own (MFNet: split lists, RGB and thermal in one PNG)."""

    index: Callable[[Path], tuple[list[Sample], int]]  # raw -> (samples, images in no split)
    decode: Callable[[Sample], Arrays]
    is_root: Callable[[Path], bool]  # whether a folder is the top of the layout (archives)
    description: str
    meta: dict[str, Any] = field(default_factory=dict)  # recorded in meta.json


@dataclass(frozen=True)
class SplitLayout:
    """A layout with one folder per split and one folder per modality inside it."""

    splits: tuple[str, ...]
    folders: dict[str, str]  # modality -> folder name
    image_exts: tuple[str, ...] = PNG
    label_exts: tuple[str, ...] = PNG
    gray_rgb_thermal: bool = False
    description: str = ""

    def exts(self, modality: str) -> tuple[str, ...]:
        return self.label_exts if modality == "label" else self.image_exts

    @property
    def meta(self) -> dict[str, Any]:
        if not self.gray_rgb_thermal:
            return {}
        return {
            "thermal_from": (
                f"3 grey channels, checked equal within {GRAY_TOLERANCE} levels, rounded mean"
            )
        }

    def is_root(self, path: Path) -> bool:
        return any((path / s / self.folders["rgb"]).is_dir() for s in self.splits)

    def is_split(self, path: Path) -> bool:
        """Whether `path` holds one split's modality folders (FMB's train.zip / test.zip)."""
        return all((path / self.folders[m]).is_dir() for m in ("rgb", "thermal"))

    def index(self, raw: Path) -> tuple[list[Sample], int]:
        """All samples; every rgb needs its thermal and label and back."""
        splits = [s for s in self.splits if (raw / s).is_dir()]
        if not splits:
            raise DataError(
                f"{raw}: no split folder ({', '.join(self.splits)}); expected the "
                f"{self.description}"
            )
        samples: list[Sample] = []
        for split in splits:
            files: dict[str, dict[str, Path]] = {}
            for modality, name in self.folders.items():
                folder = raw / split / name
                if not folder.is_dir():
                    raise DataError(f"{folder}: missing folder; expected the {self.description}")
                files[modality] = list_images(folder, self.exts(modality))
            for sample_id in sorted(set().union(*(f.keys() for f in files.values()))):
                have = next(files[m][sample_id] for m in self.folders if sample_id in files[m])
                for modality, name in self.folders.items():
                    if sample_id not in files[modality]:
                        raise DataError(
                            f"{have}: no matching {modality} image in {raw / split / name} "
                            f"(sample id {sample_id!r})"
                        )
                samples.append(Sample(split, sample_id, {m: files[m][sample_id] for m in files}))
        _check_unique(samples)
        return samples, 0

    def decode(self, sample: Sample) -> Arrays:
        rgb = read_rgb(sample.files["rgb"])
        thermal = read_thermal(sample.files["thermal"], gray_rgb=self.gray_rgb_thermal)
        return rgb, thermal, read_label(sample.files["label"])
