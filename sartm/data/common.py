"""The common on-disk layout that everything downstream reads, and its one writer.

    <out>/meta.json                      classes, palette, ignore index, normalisation, pixel counts
    <out>/manifest.csv                   id, split, subset (day/night for MFNet), relative paths
    <out>/<split>/rgb/<id>.png           8-bit RGB
    <out>/<split>/thermal/<id>.png       8-bit single channel
    <out>/<split>/label/<id>.png         8-bit class indices (255 = ignore)

`LayoutWriter` builds the dataset in a temporary sibling folder and renames it into place only
when every sample has been validated and written, so an interrupted or failed run leaves nothing
that looks complete. Nothing sartm did not write is ever replaced: an existing output folder is
replaced only when it is empty, or with `force` when it carries sartm's marker file (meta.json here,
sartm-source.json for raw and extracted folders), see `check_replaceable`.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from sartm import __version__
from sartm.errors import SartmError

IGNORE_INDEX = 255  # the label value that no class has: not scored, not trained on
META_NAME = "meta.json"
SOURCE_NAME = "sartm-source.json"  # sartm's marker in raw and extracted folders (their origin)
MANIFEST_NAME = "manifest.csv"
MODALITIES = ("rgb", "thermal", "label")
# The authors' normalisation: RGB /255 then ImageNet mean/std; thermal /255 only.
AUTHORS_NORMALISATION = {
    "rgb_mean": [0.485, 0.456, 0.406],
    "rgb_std": [0.229, 0.224, 0.225],
    "thermal_mean": [0.0, 0.0, 0.0],
    "thermal_std": [1.0, 1.0, 1.0],
}
MANIFEST_FIELDS = ("id", "split", "subset", "rgb", "thermal", "label")


class DataError(SartmError, ValueError):
    """Bad input data; the message names the offending file and what is wrong with it."""


@dataclass
class _Stats:
    """Running sums for per-channel mean/std on the training split (float64: no overflow)."""

    n: int = 0
    rgb_sum: np.ndarray = field(default_factory=lambda: np.zeros(3))
    rgb_sq: np.ndarray = field(default_factory=lambda: np.zeros(3))
    th_sum: float = 0.0
    th_sq: float = 0.0

    def add(self, rgb: np.ndarray, thermal: np.ndarray) -> None:
        r = rgb.reshape(-1, 3).astype(np.float64) / 255.0
        t = thermal.reshape(-1).astype(np.float64) / 255.0
        self.n += r.shape[0]
        self.rgb_sum += r.sum(0)
        self.rgb_sq += (r**2).sum(0)
        self.th_sum += t.sum()
        self.th_sq += (t**2).sum()

    def result(self) -> dict[str, list[float]]:
        n = max(self.n, 1)
        rgb_mean = self.rgb_sum / n
        rgb_std = np.sqrt(np.maximum(self.rgb_sq / n - rgb_mean**2, 1e-12))
        th_mean = self.th_sum / n
        th_std = float(np.sqrt(max(self.th_sq / n - th_mean**2, 1e-12)))
        return {
            "rgb_mean": rgb_mean.round(6).tolist(),
            "rgb_std": rgb_std.round(6).tolist(),
            "thermal_mean": [round(th_mean, 6)] * 3,
            "thermal_std": [round(th_std, 6)] * 3,
        }


def is_complete(out: Path) -> bool:
    """A prepared dataset is complete exactly when its meta.json exists (written last)."""
    return (Path(out) / META_NAME).is_file()


def load_meta(root: Path) -> dict[str, Any]:
    path = Path(root) / META_NAME
    if not path.is_file():
        raise DataError(f"{path}: missing; prepare the dataset first (sartm data prepare / synth)")
    try:
        meta = json.loads(path.read_text())
    except (ValueError, OSError) as exc:
        raise DataError(f"{path}: unreadable ({exc}); prepare the dataset again") from exc
    if not isinstance(meta, dict):
        raise DataError(f"{path}: not a JSON object; prepare the dataset again")
    return meta


def written_by_sartm(folder: Path, marker: str) -> bool:
    """Whether `folder` holds sartm's marker file (JSON with created_by "sartm ..."), written last."""
    path = Path(folder) / marker
    if path.is_symlink() or not path.is_file():
        return False
    try:
        record = json.loads(path.read_text())
    except (ValueError, OSError):
        return False
    return isinstance(record, dict) and str(record.get("created_by", "")).startswith("sartm ")


def _empty_dir(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink() and not any(path.iterdir())


def check_replaceable(out: Path, *, force: bool, marker: str) -> None:
    """Refuse to replace `out` unless it is absent or an empty folder, or (with `force`) a folder
    sartm wrote (it holds `marker`): a user's own folder is never deleted, not even with --force."""
    out = Path(out)
    if (not out.exists() and not out.is_symlink()) or _empty_dir(out):
        return
    if out.is_symlink() or not out.is_dir():
        raise DataError(
            f"{out}: exists and is not a folder; refusing to replace it: choose another output"
        )
    if not written_by_sartm(out, marker):
        raise DataError(
            f"{out}: exists and was not written by sartm (it holds no {marker} of sartm's); "
            f"refusing to replace it, even with --force: choose another output folder or move it "
            f"away yourself"
        )
    if not force:
        raise DataError(f"{out}: already exists; use --force to replace it")


def check_apart(source: Path, out: Path, *, source_is: str, out_is: str) -> None:
    """Refuse an output that is, holds or lies inside its input: replacing it would delete it."""
    a, b = Path(source).resolve(), Path(out).resolve()
    if a == b or a.is_relative_to(b) or b.is_relative_to(a):
        raise DataError(
            f"{out}: {out_is} overlaps {source_is} {source} (one is, or is inside, the other), "
            f"so writing it would replace the input; choose separate folders"
        )


def replace_dir(tmp: Path, out: Path, *, force: bool, marker: str) -> None:
    """Rename the finished folder `tmp` to `out` (checked again now: `out` may have changed
    meanwhile). An old `out` is moved aside first and deleted only once `tmp` is in its place."""
    check_replaceable(out, force=force, marker=marker)
    if _empty_dir(out):
        out.rmdir()
    if not out.exists():
        os.replace(tmp, out)
        return
    aside = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
    os.replace(out, aside / out.name)
    try:
        os.replace(tmp, out)
    except BaseException:
        os.replace(aside / out.name, out)
        raise
    shutil.rmtree(aside, ignore_errors=True)


def read_manifest(root: Path) -> list[dict[str, str]]:
    path = Path(root) / MANIFEST_NAME
    if not path.is_file():
        raise DataError(f"{path}: missing; the dataset folder is incomplete")
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def check_sample(
    sample_id: str,
    rgb: np.ndarray,
    thermal: np.ndarray,
    label: np.ndarray,
    num_classes: int,
    origin: dict[str, str],
) -> None:
    """Validate one decoded sample; errors name the source file (origin: modality -> path)."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        where = origin.get("rgb", sample_id)
        raise DataError(f"{where}: RGB must be HxWx3 uint8, got {rgb.shape} {rgb.dtype}")
    if thermal.ndim != 2 or thermal.dtype != np.uint8:
        where = origin.get("thermal", sample_id)
        raise DataError(f"{where}: thermal must be HxW uint8, got {thermal.shape} {thermal.dtype}")
    if label.ndim != 2 or label.dtype != np.uint8:
        where = origin.get("label", sample_id)
        raise DataError(f"{where}: label must be HxW uint8, got {label.shape} {label.dtype}")
    sizes = {"rgb": rgb.shape[:2], "thermal": thermal.shape, "label": label.shape}
    if len(set(sizes.values())) != 1:
        detail = ", ".join(f"{m} {origin.get(m, '?')} is {s[1]}x{s[0]}" for m, s in sizes.items())
        raise DataError(f"sample {sample_id}: RGB/thermal/label sizes differ: {detail}")
    values = np.unique(label)
    bad = values[(values >= num_classes) & (values != IGNORE_INDEX)]
    if bad.size:
        raise DataError(
            f"{origin.get('label', sample_id)}: label values {bad.tolist()} outside the class range "
            f"0..{num_classes - 1} (255 = ignore)"
        )


class LayoutWriter:
    """Write a dataset in the common layout atomically (use as a context manager); an existing
    `out` is replaced only when sartm wrote it and `force` is given (see check_replaceable)."""

    def __init__(
        self,
        out: Path,
        *,
        name: str,
        classes: list[str] | tuple[str, ...],
        palette: list[tuple[int, int, int]] | tuple[tuple[int, int, int], ...],
        source: str,
        synthetic: bool,
        extra_meta: dict[str, Any] | None = None,
        force: bool = False,
    ) -> None:
        self.out = Path(out)
        self.force = force
        self.name = name
        self.classes = list(classes)
        self.palette = [list(map(int, c)) for c in palette]
        self.source = source
        self.synthetic = synthetic
        self.extra_meta = extra_meta or {}
        self.rows: list[dict[str, str]] = []
        self.ids: dict[str, str] = {}
        self.counts: dict[str, np.ndarray] = {}
        self.stats = _Stats()
        self.tmp: Path | None = None

    def __enter__(self) -> LayoutWriter:
        check_replaceable(self.out, force=self.force, marker=META_NAME)  # before any work
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.partial-", dir=self.out.parent))
        self.tmp.chmod(0o755)  # mkdtemp's 0700 would make the finished dataset private
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        assert self.tmp is not None
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        try:
            self._finish()
        except BaseException:
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise

    def add(
        self,
        split: str,
        sample_id: str,
        rgb: np.ndarray,
        thermal: np.ndarray,
        label: np.ndarray,
        *,
        subset: str = "",
        origin: dict[str, str] | None = None,
    ) -> None:
        """Validate and write one sample (thermal: HxW uint8; label: HxW uint8 class ids)."""
        assert self.tmp is not None, "use LayoutWriter as a context manager"
        origin = origin or {}
        if sample_id in self.ids:
            raise DataError(
                f"{origin.get('rgb', sample_id)}: duplicate sample id {sample_id!r} "
                f"(already in split {self.ids[sample_id]!r})"
            )
        check_sample(sample_id, rgb, thermal, label, len(self.classes), origin)
        self.ids[sample_id] = split
        row = {"id": sample_id, "split": split, "subset": subset}
        for modality, array in zip(MODALITIES, (rgb, thermal, label), strict=True):
            rel = Path(split) / modality / f"{sample_id}.png"
            (self.tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(array).save(self.tmp / rel, compress_level=1)
            row[modality] = rel.as_posix()
        self.rows.append(row)
        counts = np.bincount(label[label != IGNORE_INDEX].ravel(), minlength=len(self.classes))
        self.counts[split] = self.counts.get(split, np.zeros(len(self.classes), np.int64)) + counts
        if split == "train":
            self.stats.add(rgb, thermal)

    def _finish(self) -> None:
        assert self.tmp is not None
        if not self.rows:
            raise DataError(f"{self.out}: no samples were written")
        with (self.tmp / MANIFEST_NAME).open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=MANIFEST_FIELDS)
            writer.writeheader()
            writer.writerows(sorted(self.rows, key=lambda r: (r["split"], r["id"])))
        splits: dict[str, int] = {}
        subsets: dict[str, int] = {}
        for row in self.rows:
            splits[row["split"]] = splits.get(row["split"], 0) + 1
            if row["subset"]:
                key = f"{row['split']}_{row['subset']}"
                subsets[key] = subsets.get(key, 0) + 1
        meta = {
            "name": self.name,
            "synthetic": self.synthetic,
            "source": self.source,
            "classes": self.classes,
            "palette": self.palette,
            "ignore_index": IGNORE_INDEX,
            "splits": splits,
            "subsets": subsets,
            "normalisation": {"authors": AUTHORS_NORMALISATION, "computed": self.stats.result()},
            "class_pixel_counts": {s: c.tolist() for s, c in sorted(self.counts.items())},
            "created_by": f"sartm {__version__}",
            **self.extra_meta,
        }
        (self.tmp / META_NAME).write_text(json.dumps(meta, indent=2))
        replace_dir(self.tmp, self.out, force=self.force, marker=META_NAME)
