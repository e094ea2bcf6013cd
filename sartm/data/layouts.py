"""Readers for each dataset's ORIGINAL layout, converted to the common layout by `prepare`.

    mfnet    images/<id>.png (4 channels: RGB + thermal in the 4th, NOT alpha), labels/<id>.png,
             train.txt / val.txt / test.txt (the splits), test_day.txt / test_night.txt (subsets
             of test; other ids get day/night from their D/N suffix)
    pst900   {train,test}/{rgb,thermal,labels}/<id>.png   (depth/ and thermal_raw/ are ignored)
    fmb      {train,test}/{Visible,Infrared,Label}/<id>.png   (color/ is ignored)
    custom   {train,val,test}/{rgb,thermal,label}/<id>.<ext> plus a class file (YAML or JSON list
             of {name, color}); prepared as `custom-<name>`

Every sample is decoded and checked (readable, channel count, sizes, label range, counterparts,
unique ids) and the first problem stops the run with an error naming the file. Nothing outside
`raw` is read: a symlink that leads out of it is refused, naming it. Labels must be
class-index images: colour-rendered labels (FMB's color/) are refused, never guessed from a
palette. Thermal images stored as three equal grey channels (FMB's Infrared) are accepted where
the dataset ships them that way: the channels must agree within `GRAY_TOLERANCE` grey levels and
their rounded mean is kept (for the real files all three channels are identical).
"""

from __future__ import annotations

import json
import re
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import yaml
from PIL import Image
from tqdm import tqdm

from sartm.config import CUSTOM_PREFIX, LOGICAL_DATASETS
from sartm.data.common import DataError, LayoutWriter, check_apart, is_complete, load_meta
from sartm.data.spec import IGNORE_INDEX, REAL

GRAY_TOLERANCE = 3
# Real MFNet thermal frames have their commonest value in under 8% of pixels (../shared/samples:
# 2.8-7.8%); an alpha channel (or a blank frame) has one value almost everywhere.
MFNET_MAX_MODAL_FRACTION = 0.9
CUSTOM_NAME = re.compile(r"^custom-[A-Za-z0-9_.-]+$")
DATASETS = LOGICAL_DATASETS  # plus custom-<name>
PNG = (".png",)
CUSTOM_IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
CUSTOM_LABEL_EXTS = (".png", ".bmp", ".tif", ".tiff")  # lossless only: labels are class ids
MFNET_SPLIT_LISTS = {"train": "train.txt", "val": "val.txt", "test": "test.txt"}
MFNET_SUBSET_LISTS = {"day": "test_day.txt", "night": "test_night.txt"}
MFNET_SUFFIX_SUBSET = {"D": "day", "N": "night"}
_SKIP_DIRS = {"__MACOSX"}
_DECODE_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    zlib.error,
    struct.error,
    Image.DecompressionBombError,
)

CLASS_FILE_SCHEMA: dict[str, Any] = {
    "type": "array",
    "minItems": 1,
    "maxItems": IGNORE_INDEX,  # ids 0..254; 255 is the ignore index
    "items": {
        "type": "object",
        "required": ["name", "color"],
        "additionalProperties": False,
        "properties": {
            "name": {"type": "string", "minLength": 1},
            "color": {
                "type": "array",
                "minItems": 3,
                "maxItems": 3,
                "items": {"type": "integer", "minimum": 0, "maximum": 255},
            },
        },
    },
}


# --- decoding one image, with errors that name the file ------------------------------------


def _decode(path: Path) -> tuple[str, np.ndarray]:
    """(PIL mode, array) of a fully decoded image; unreadable or truncated files are errors."""
    try:
        with Image.open(path) as im:
            im.load()
            return im.mode, np.array(im)
    except FileNotFoundError as exc:
        raise DataError(f"{path}: missing") from exc
    except _DECODE_ERRORS as exc:
        raise DataError(f"{path}: unreadable or truncated image ({exc})") from exc


def _channels(mode: str) -> int:
    try:
        return Image.getmodebands(mode)
    except KeyError:
        return 0


def read_rgb(path: Path) -> np.ndarray:
    """An 8-bit 3-channel colour image (HxWx3 uint8); any other channel count is an error."""
    mode, array = _decode(path)
    if mode != "RGB":
        raise DataError(
            f"{path}: RGB image must have 3 channels (mode RGB), found mode {mode} "
            f"({_channels(mode)} channel(s))"
        )
    return array


def read_thermal(path: Path, *, gray_rgb: bool) -> np.ndarray:
    """An 8-bit single-channel thermal image (HxW uint8).

    gray_rgb: also accept a 3-channel image whose channels agree within GRAY_TOLERANCE (stored
    grey, as FMB's Infrared); their rounded mean is returned. A false-colour rendering is refused.
    """
    mode, array = _decode(path)
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
        f"({_channels(mode)} channel(s))"
    )


def read_label(path: Path) -> np.ndarray:
    """A class-index label map (HxW uint8): mode L or P (palette indices are the class ids)."""
    mode, array = _decode(path)
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
        f"({_channels(mode)} channel(s))"
    )


def read_mfnet_rgbt(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """MFNet's 4-channel PNG -> (RGB HxWx3, thermal HxW). The 4th channel is thermal, not alpha."""
    mode, array = _decode(path)
    if mode != "RGBA":
        raise DataError(
            f"{path}: MFNet image must have 4 channels (RGB + thermal), found mode {mode} "
            f"({_channels(mode)} channel(s)); a tool that treats the 4th channel as alpha "
            f"(e.g. OpenCV's default imread) may have dropped the thermal data"
        )
    thermal = np.ascontiguousarray(array[..., 3])
    counts = np.bincount(thermal.ravel(), minlength=256)
    modal = int(counts.argmax())
    if thermal.size and counts[modal] > MFNET_MAX_MODAL_FRACTION * thermal.size:
        raise DataError(
            f"{path}: 4th channel is {modal} in {counts[modal] / thermal.size:.1%} of its pixels - "
            f"an alpha channel (or a blank frame), not MFNet thermal data"
        )
    return np.ascontiguousarray(array[..., :3]), thermal


# --- indexing the original layouts ----------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    split: str
    id: str
    files: dict[str, Path]  # modality (rgb, thermal, label) -> source file
    subset: str = ""


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


PST900_LAYOUT = SplitLayout(
    splits=("train", "test"),
    folders={"rgb": "rgb", "thermal": "thermal", "label": "labels"},
    description="PST900 original layout {train,test}/{rgb,thermal,labels}/<id>.png",
)
FMB_LAYOUT = SplitLayout(
    splits=("train", "test"),
    folders={"rgb": "Visible", "thermal": "Infrared", "label": "Label"},
    gray_rgb_thermal=True,
    description="FMB original layout {train,test}/{Visible,Infrared,Label}/<id>.png",
)
CUSTOM_LAYOUT = SplitLayout(
    splits=("train", "val", "test"),
    folders={"rgb": "rgb", "thermal": "thermal", "label": "label"},
    image_exts=CUSTOM_IMAGE_EXTS,
    label_exts=CUSTOM_LABEL_EXTS,
    gray_rgb_thermal=True,
    description="custom layout {train,val,test}/{rgb,thermal,label}/<id>.<ext>",
)


def _list_images(folder: Path, exts: tuple[str, ...]) -> dict[str, Path]:
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


def index_split_layout(raw: Path, layout: SplitLayout) -> tuple[list[Sample], int]:
    """All samples of a split-folder layout; every rgb needs its thermal and label and back."""
    splits = [s for s in layout.splits if (raw / s).is_dir()]
    if not splits:
        raise DataError(
            f"{raw}: no split folder ({', '.join(layout.splits)}); expected the "
            f"{layout.description}"
        )
    samples: list[Sample] = []
    for split in splits:
        files: dict[str, dict[str, Path]] = {}
        for modality, name in layout.folders.items():
            folder = raw / split / name
            if not folder.is_dir():
                raise DataError(f"{folder}: missing folder; expected the {layout.description}")
            files[modality] = _list_images(folder, layout.exts(modality))
        for sample_id in sorted(set().union(*(f.keys() for f in files.values()))):
            have = next(files[m][sample_id] for m in layout.folders if sample_id in files[m])
            for modality, name in layout.folders.items():
                if sample_id not in files[modality]:
                    raise DataError(
                        f"{have}: no matching {modality} image in {raw / split / name} "
                        f"(sample id {sample_id!r})"
                    )
            samples.append(Sample(split, sample_id, {m: files[m][sample_id] for m in files}))
    _check_unique(samples)
    return samples, 0


def _inside(root: Path, path: Path) -> Path:
    """`path`, refused when it resolves outside `root` (a symlink out): prepare reads nothing else."""
    real = path.resolve()
    if not real.is_relative_to(root.resolve()):
        raise DataError(
            f"{path}: a symlink that leads outside {root} (to {real}); prepare reads nothing "
            f"outside --raw: copy the file in, or pass the folder that holds it as --raw"
        )
    return path


def _read_id_list(path: Path) -> list[str]:
    """Ids one per line, with or without a .png extension; blank lines are skipped."""
    try:
        text = path.read_text()
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not a text file of sample ids ({exc})") from exc
    ids: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        item = line.strip()
        if not item:
            continue
        item = item.removesuffix(".png")
        if "/" in item or "\\" in item or item in (".", ".."):
            raise DataError(f"{path}:{number}: {line.strip()!r} is not a sample id")
        if item in ids:
            raise DataError(f"{path}:{number}: sample id {item!r} listed twice")
        ids.append(item)
    return ids


def index_mfnet(raw: Path) -> tuple[list[Sample], int]:
    """MFNet's split lists -> samples; day/night subsets from the test lists, else the suffix."""
    for folder in ("images", "labels"):
        if not (raw / folder).is_dir():
            raise DataError(
                f"{raw / folder}: missing folder; expected MFNet's images/, labels/ and split lists"
            )
    lists = {s: raw / f for s, f in MFNET_SPLIT_LISTS.items() if (raw / f).is_file()}
    if not lists:
        raise DataError(
            f"{raw}: no split list ({', '.join(MFNET_SPLIT_LISTS.values())}); MFNet's splits "
            f"come from these files, shipped with the dataset"
        )
    split_of: dict[str, tuple[str, Path]] = {}
    for split, list_file in lists.items():
        ids = _read_id_list(_inside(raw, list_file))
        if not ids:
            raise DataError(
                f"{list_file}: lists no sample ids, so the {split} split would be empty; "
                f"restore it from the dataset archive"
            )
        for sample_id in ids:
            if sample_id in split_of:
                other = split_of[sample_id][1]
                raise DataError(
                    f"{list_file}: duplicate sample id {sample_id!r} (also listed in {other})"
                )
            split_of[sample_id] = (split, list_file)
    subset_of: dict[str, str] = {}
    for subset, name in MFNET_SUBSET_LISTS.items():
        list_file = raw / name
        if not list_file.is_file():
            continue
        for sample_id in _read_id_list(_inside(raw, list_file)):
            if split_of.get(sample_id, ("",))[0] != "test":
                raise DataError(
                    f"{list_file}: sample id {sample_id!r} is not in test.txt "
                    f"(day/night lists are subsets of the test split)"
                )
            if sample_id in subset_of:
                raise DataError(f"{list_file}: sample id {sample_id!r} is both day and night")
            subset_of[sample_id] = subset
    images = _list_images(raw / "images", PNG)
    labels = _list_images(raw / "labels", PNG)
    samples: list[Sample] = []
    for sample_id, (split, list_file) in split_of.items():
        if sample_id not in images:
            raise DataError(
                f"{raw / 'images' / (sample_id + '.png')}: missing (sample {sample_id!r} is listed "
                f"in {list_file})"
            )
        if sample_id not in labels:
            raise DataError(
                f"{images[sample_id]}: no matching label {raw / 'labels' / (sample_id + '.png')}"
            )
        subset = subset_of.get(sample_id) or MFNET_SUFFIX_SUBSET.get(sample_id[-1:], "")
        files = {"rgb": images[sample_id], "thermal": images[sample_id], "label": labels[sample_id]}
        samples.append(Sample(split, sample_id, files, subset))
    # Images in no list (e.g. flipped copies some tools add) are not part of any split.
    ignored = len(set(images) - set(split_of))
    return samples, ignored


def _decode_mfnet(sample: Sample) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rgb, thermal = read_mfnet_rgbt(sample.files["rgb"])
    return rgb, thermal, read_label(sample.files["label"])


def _split_decoder(layout: SplitLayout) -> Callable[[Sample], tuple[np.ndarray, ...]]:
    def decode(sample: Sample) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rgb = read_rgb(sample.files["rgb"])
        thermal = read_thermal(sample.files["thermal"], gray_rgb=layout.gray_rgb_thermal)
        return rgb, thermal, read_label(sample.files["label"])

    return decode


# --- custom class files ----------------------------------------------------------------------


def load_class_file(path: Path) -> tuple[list[str], list[tuple[int, int, int]]]:
    """(class names, palette) from a YAML or JSON list of {name, color}; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: class file not found")
    try:
        text = path.read_text()
        content = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot parse class file ({exc})") from exc
    if isinstance(content, dict) and "classes" in content:
        content = content["classes"]
    try:
        jsonschema.validate(content, CLASS_FILE_SCHEMA)
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "top level"
        raise DataError(
            f"{path}: invalid class file at {where}: {exc.message} "
            f"(expected a list of {{name, color: [r, g, b]}})"
        ) from exc
    names = [c["name"] for c in content]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise DataError(f"{path}: duplicate class names {duplicates}")
    return names, [tuple(c["color"]) for c in content]


# --- prepare ---------------------------------------------------------------------------------


@dataclass
class PrepareResult:
    dataset: str
    out: Path
    already: bool
    splits: dict[str, int] = field(default_factory=dict)
    subsets: dict[str, int] = field(default_factory=dict)
    ignored: int = 0


@dataclass(frozen=True)
class _Reader:
    classes: list[str]
    palette: list[tuple[int, int, int]]
    index: Callable[[Path], tuple[list[Sample], int]]
    decode: Callable[[Sample], tuple[np.ndarray, np.ndarray, np.ndarray]]
    description: str
    extra: dict[str, Any] = field(default_factory=dict)


def _reader(dataset: str, classes_file: Path | None) -> _Reader:
    if dataset == "mfnet":
        spec = REAL["mfnet"]
        return _Reader(
            list(spec.classes),
            list(spec.palette),
            index_mfnet,
            _decode_mfnet,
            "MFNet original layout: images/<id>.png (RGB + thermal 4th channel), labels/<id>.png, "
            "split lists",
        )
    if dataset in ("pst900", "fmb"):
        spec = REAL[dataset]
        layout = PST900_LAYOUT if dataset == "pst900" else FMB_LAYOUT
        extra = {}
        if layout.gray_rgb_thermal:
            extra["thermal_from"] = (
                f"3 grey channels, checked equal within {GRAY_TOLERANCE} levels, rounded mean"
            )
        return _Reader(
            list(spec.classes),
            list(spec.palette),
            lambda raw: index_split_layout(raw, layout),
            _split_decoder(layout),
            layout.description,
            extra,
        )
    if CUSTOM_NAME.match(dataset):
        if classes_file is None:
            raise DataError(f"{dataset}: a custom dataset needs its class file (--classes FILE)")
        classes, palette = load_class_file(classes_file)
        return _Reader(
            classes,
            palette,
            lambda raw: index_split_layout(raw, CUSTOM_LAYOUT),
            _split_decoder(CUSTOM_LAYOUT),
            CUSTOM_LAYOUT.description,
            {"class_file": Path(classes_file).name},
        )
    raise DataError(
        f"unknown dataset {dataset!r}; known: {', '.join(DATASETS)}, or custom-<name> "
        f"(letters, digits, '_', '.', '-')"
    )


def prepare(
    dataset: str,
    *,
    raw: Path,
    out: Path,
    classes_file: Path | None = None,
    force: bool = False,
    progress: bool = True,
) -> PrepareResult:
    """Convert the original layout in `raw` to the common layout in `out` (atomically).

    A complete `out` of the same dataset is left alone unless `force`; a failure leaves no
    complete-looking output (LayoutWriter builds in a temporary folder and renames at the end).
    Only an `out` that sartm wrote is ever replaced, and never one that is, holds or lies in `raw`.
    """
    raw, out = Path(raw), Path(out)
    reader = _reader(dataset, classes_file)
    check_apart(raw, out, source_is="--raw", out_is="--out")
    if is_complete(out) and not force:
        meta = load_meta(out)
        if meta.get("name") != dataset:
            raise DataError(
                f"{out}: already holds dataset {meta.get('name')!r}, not {dataset!r} "
                f"(use --force to replace it)"
            )
        return PrepareResult(dataset, out, True, meta.get("splits", {}), meta.get("subsets", {}))
    if not raw.is_dir():
        hint = "" if dataset.startswith(CUSTOM_PREFIX) else f"; run `sartm data download {dataset}`"
        raise DataError(f"{raw}: raw dataset folder not found{hint} (or pass --raw)")
    samples, ignored = reader.index(raw)
    if not samples:
        raise DataError(f"{raw}: no samples found ({reader.description})")
    for sample in samples:
        for path in sample.files.values():
            _inside(raw, path)
    extra = {"prepared_from": reader.description, **reader.extra}
    with LayoutWriter(
        out,
        name=dataset,
        classes=reader.classes,
        palette=reader.palette,
        source=dataset,
        synthetic=False,
        extra_meta=extra,
        force=force,
    ) as writer:
        for sample in tqdm(samples, desc=f"prepare {dataset}", unit="sample", disable=not progress):
            rgb, thermal, label = reader.decode(sample)
            origin = {m: str(p) for m, p in sample.files.items()}
            writer.add(
                sample.split, sample.id, rgb, thermal, label, subset=sample.subset, origin=origin
            )
    meta = load_meta(out)
    return PrepareResult(dataset, out, False, meta["splits"], meta.get("subsets", {}), ignored)


# --- finding a layout inside extracted archives (used by `download`) -------------------------


def _split_layout_of(dataset: str) -> SplitLayout | None:
    return {"pst900": PST900_LAYOUT, "fmb": FMB_LAYOUT}.get(dataset)


def looks_like_root(dataset: str, path: Path) -> bool:
    """Whether `path` is the top of `dataset`'s original layout."""
    if dataset == "mfnet":
        return (path / "images").is_dir() and (path / "labels").is_dir()
    layout = _split_layout_of(dataset)
    assert layout is not None, dataset
    return any((path / s / layout.folders["rgb"]).is_dir() for s in layout.splits)


def _looks_like_split(layout: SplitLayout, path: Path) -> bool:
    return all((path / layout.folders[m]).is_dir() for m in ("rgb", "thermal"))


def _walk(tree: Path, max_depth: int) -> list[Path]:
    """Folders of `tree`, shallowest first (macOS resource folders and dot folders skipped)."""
    level, found = [tree], []
    for _ in range(max_depth + 1):
        found.extend(level)
        level = [
            c
            for d in level
            for c in sorted(d.iterdir())
            if c.is_dir()
            and not c.is_symlink()
            and c.name not in _SKIP_DIRS
            and not c.name.startswith(".")
        ]
    return found


def _merge_move(src: Path, dst: Path, *, origin: str) -> None:
    """Move the contents of `src` into `dst` (same file system), merging folders."""
    dst.mkdir(parents=True, exist_ok=True)
    for child in sorted(src.iterdir()):
        target = dst / child.name
        if not target.exists() and not target.is_symlink():
            child.replace(target)
        elif target.is_dir() and child.is_dir() and not child.is_symlink():
            _merge_move(child, target, origin=origin)
        else:
            raise DataError(f"{origin}: {target.name} is provided twice by the archives")


def assemble_raw(dataset: str, trees: list[tuple[Path, str]], dest: Path) -> None:
    """Move the dataset out of extracted archive trees into `dest`, in its original layout.

    trees: (extracted folder, archive name). A tree may hold the whole layout under any wrapper
    folders, or (split-folder datasets) one split's modality folders, whose split is then the
    folder's or the archive's name (FMB's train.zip / test.zip).
    """
    layout = _split_layout_of(dataset)
    for tree, archive in trees:
        folders = _walk(tree, max_depth=4)
        root = next((d for d in folders if looks_like_root(dataset, d)), None)
        if root is not None:
            _merge_move(root, dest, origin=archive)
            continue
        split_dir = (
            None
            if layout is None
            else next((d for d in folders if _looks_like_split(layout, d)), None)
        )
        if split_dir is None:
            raise DataError(f"{archive}: does not contain the {dataset} layout")
        stem = Path(archive).name.split(".")[0].lower()
        split = next((s for s in (split_dir.name.lower(), stem) if s in layout.splits), None)
        if split is None:
            raise DataError(
                f"{archive}: holds one split of {dataset} but its split ({', '.join(layout.splits)}) "
                f"cannot be told from the folder or archive name"
            )
        _merge_move(split_dir, dest / split, origin=archive)
    if not looks_like_root(dataset, dest):
        raise DataError(f"{', '.join(a for _, a in trees)}: do not contain the {dataset} layout")
