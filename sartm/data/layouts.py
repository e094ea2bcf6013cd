"""`prepare`: a dataset's ORIGINAL layout -> the common layout (sartm.data.common).

A built-in dataset is read by the reader of its entry (sartm.data.builtin: MFNet's split lists,
PST900's and FMB's split folders, see each module); a dataset of your own, `custom-<name>`, is
read from {train,val,test}/{rgb,thermal,label}/<id>.<ext> plus a class file (YAML or JSON list
of {name, color}).

Every sample is decoded and checked (readable, channel count, sizes, label range, counterparts,
unique ids) and the first problem stops the run with an error naming the file (sartm.data.readers).
Nothing outside `raw` is read: a symlink that leads out of it is refused, naming it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from tqdm import tqdm

from sartm.config import CUSTOM_NAME_CHARS, CUSTOM_PREFIX
from sartm.data import builtin
from sartm.data.common import (
    IGNORE_INDEX,
    DataError,
    LayoutWriter,
    check_apart,
    is_complete,
    load_meta,
)
from sartm.data.readers import Reader, SplitLayout, inside

CUSTOM_NAME = re.compile(f"^{CUSTOM_PREFIX}{CUSTOM_NAME_CHARS}$")
CUSTOM_IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
CUSTOM_LABEL_EXTS = (".png", ".bmp", ".tif", ".tiff")  # lossless only: labels are class ids
_SKIP_DIRS = {"__MACOSX"}

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


CUSTOM_LAYOUT = SplitLayout(
    splits=("train", "val", "test"),
    folders={"rgb": "rgb", "thermal": "thermal", "label": "label"},
    image_exts=CUSTOM_IMAGE_EXTS,
    label_exts=CUSTOM_LABEL_EXTS,
    gray_rgb_thermal=True,
    description="custom layout {train,val,test}/{rgb,thermal,label}/<id>.<ext>",
)


# --- custom class files ----------------------------------------------------------------------


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
    layout: SplitLayout | Reader
    extra: dict[str, Any] = field(default_factory=dict)


def _reader(dataset: str, classes_file: Path | None) -> _Reader:
    if dataset in builtin.BUILTIN:
        entry = builtin.builtin(dataset)
        spec, layout = entry.spec, entry.reader
        return _Reader(list(spec.classes), list(spec.palette), layout, dict(layout.meta))
    if CUSTOM_NAME.match(dataset):
        if classes_file is None:
            raise DataError(f"{dataset}: a custom dataset needs its class file (--classes FILE)")
        classes, palette = load_class_file(classes_file)
        return _Reader(classes, palette, CUSTOM_LAYOUT, {"class_file": Path(classes_file).name})
    raise DataError(
        f"unknown dataset {dataset!r}; known: {', '.join(builtin.names())}, or custom-<name> "
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
    layout = reader.layout
    samples, ignored = layout.index(raw)
    if not samples:
        raise DataError(f"{raw}: no samples found ({layout.description})")
    for sample in samples:
        for path in sample.files.values():
            inside(raw, path)
    extra = {"prepared_from": layout.description, **reader.extra}
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
            rgb, thermal, label = layout.decode(sample)
            origin = {m: str(p) for m, p in sample.files.items()}
            writer.add(
                sample.split, sample.id, rgb, thermal, label, subset=sample.subset, origin=origin
            )
    meta = load_meta(out)
    return PrepareResult(dataset, out, False, meta["splits"], meta.get("subsets", {}), ignored)


# --- finding a layout inside extracted archives (used by `download`) -------------------------


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
    layout = builtin.builtin(dataset).reader
    for tree, archive in trees:
        folders = _walk(tree, max_depth=4)
        root = next((d for d in folders if layout.is_root(d)), None)
        if root is not None:
            _merge_move(root, dest, origin=archive)
            continue
        split_dir = (
            next((d for d in folders if layout.is_split(d)), None)
            if isinstance(layout, SplitLayout)
            else None
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
    if not layout.is_root(dest):
        raise DataError(f"{', '.join(a for _, a in trees)}: do not contain the {dataset} layout")
