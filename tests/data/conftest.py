"""Fixtures that build tiny raw datasets in each ORIGINAL layout (32x24 images) and archives.

Every builder returns the folder it made and writes deterministic pixels, so tests can compare
the prepared output with the source arrays exactly (`source_arrays`).
"""

from __future__ import annotations

import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

WIDTH, HEIGHT = 32, 24
SAMPLES = Path(__file__).resolve().parents[2] / ".." / "shared" / "samples"


def pixels(seed: int, channels: int = 0, *, low: int = 0, high: int = 256) -> np.ndarray:
    """Deterministic random uint8 pixels: (H, W) when channels == 0, else (H, W, channels)."""
    shape = (HEIGHT, WIDTH) if channels == 0 else (HEIGHT, WIDTH, channels)
    return np.random.default_rng(seed).integers(low, high, shape, dtype=np.uint8)


def label_map(seed: int, num_classes: int) -> np.ndarray:
    """A label map in which every class 0..num_classes-1 occurs (vertical stripes, shifted)."""
    columns = (np.arange(WIDTH) // 2 + seed) % num_classes
    return np.broadcast_to(columns, (HEIGHT, WIDTH)).astype(np.uint8).copy()


def save(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def _seed(sample_id: str) -> int:
    return sum(map(ord, sample_id))


def source_arrays(sample_id: str, num_classes: int) -> dict[str, np.ndarray]:
    """What the builders wrote for `sample_id`: rgb (H,W,3), thermal (H,W), label (H,W)."""
    seed = _seed(sample_id)
    return {
        "rgb": pixels(seed, 3),
        "thermal": pixels(seed + 1, low=1, high=255),
        "label": label_map(seed, num_classes),
    }


MFNET_IDS = {"train": ["00001D", "00002N"], "val": ["00003D"], "test": ["00004D", "00005N"]}
PST900_IDS = {"train": ["31_bag1a_frame01", "31_bag1a_frame02"], "test": ["32_bag2_frame01"]}
FMB_IDS = {"train": ["00001", "00002"], "test": ["00101", "00102"]}
CUSTOM_IDS = {"train": ["a1", "a2"], "val": ["b1"], "test": ["c1"]}


@pytest.fixture
def make_mfnet() -> Callable[..., Path]:
    """MFNet: images/<id>.png RGBA (4th channel = thermal), labels/, split and day/night lists."""

    def build(
        root: Path,
        ids: dict[str, list[str]] | None = None,
        *,
        day_night_lists: bool = True,
        with_extension: bool = False,
    ) -> Path:
        ids = ids or MFNET_IDS
        for sample_id in [i for split in ids.values() for i in split]:
            arrays = source_arrays(sample_id, 9)
            rgbt = np.dstack([arrays["rgb"], arrays["thermal"]])
            save(root / "images" / f"{sample_id}.png", rgbt)
            save(root / "labels" / f"{sample_id}.png", arrays["label"])
        suffix = ".png" if with_extension else ""
        for split, split_ids in ids.items():
            (root / f"{split}.txt").write_text("".join(f"{i}{suffix}\n" for i in split_ids))
        if day_night_lists:
            test = ids.get("test", [])
            (root / "test_day.txt").write_text("".join(f"{i}\n" for i in test if i.endswith("D")))
            (root / "test_night.txt").write_text("".join(f"{i}\n" for i in test if i.endswith("N")))
        return root

    return build


def _split_layout(
    root: Path,
    ids: dict[str, list[str]],
    folders: tuple[str, str, str],
    num_classes: int,
    *,
    thermal_channels: int = 0,
    ext: str = ".png",
) -> Path:
    rgb_dir, thermal_dir, label_dir = folders
    for split, split_ids in ids.items():
        for sample_id in split_ids:
            arrays = source_arrays(sample_id, num_classes)
            save(root / split / rgb_dir / f"{sample_id}{ext}", arrays["rgb"])
            thermal = arrays["thermal"]
            if thermal_channels == 3:
                thermal = np.dstack([thermal] * 3)
            save(root / split / thermal_dir / f"{sample_id}{ext}", thermal)
            save(root / split / label_dir / f"{sample_id}.png", arrays["label"])
    return root


@pytest.fixture
def make_pst900() -> Callable[..., Path]:
    """PST900: {train,test}/{rgb,thermal,labels}/ plus the ignored depth/ and thermal_raw/."""

    def build(root: Path, ids: dict[str, list[str]] | None = None) -> Path:
        ids = ids or PST900_IDS
        _split_layout(root, ids, ("rgb", "thermal", "labels"), 5)
        for split, split_ids in ids.items():
            for sample_id in split_ids:  # 16-bit extras that prepare must leave alone
                raw16 = np.full((HEIGHT, WIDTH), 40000, np.uint16)
                for extra in ("depth", "thermal_raw"):
                    path = root / split / extra / f"{sample_id}.png"
                    path.parent.mkdir(parents=True, exist_ok=True)
                    Image.fromarray(raw16).save(path)
        return root

    return build


@pytest.fixture
def make_fmb() -> Callable[..., Path]:
    """FMB: {train,test}/{Visible,Infrared (3 equal grey channels),Label}/ plus colour labels."""

    def build(root: Path, ids: dict[str, list[str]] | None = None) -> Path:
        ids = ids or FMB_IDS
        _split_layout(root, ids, ("Visible", "Infrared", "Label"), 15, thermal_channels=3)
        for split, split_ids in ids.items():
            for sample_id in split_ids:  # rendered labels: ignored by prepare
                save(root / split / "color" / f"{sample_id}.png", pixels(_seed(sample_id), 3))
        return root

    return build


CUSTOM_CLASSES_YAML = """\
- {name: background, color: [0, 0, 0]}
- {name: person, color: [255, 0, 0]}
- {name: car, color: [0, 0, 255]}
"""


@pytest.fixture
def make_custom() -> Callable[..., tuple[Path, Path]]:
    """custom: {train,val,test}/{rgb (jpg for one split),thermal,label}/ and a YAML class file."""

    def build(root: Path, ids: dict[str, list[str]] | None = None) -> tuple[Path, Path]:
        ids = ids or CUSTOM_IDS
        for split, split_ids in ids.items():
            _split_layout(root, {split: split_ids}, ("rgb", "thermal", "label"), 3)
        classes = root.parent / "classes.yaml"
        classes.write_text(CUSTOM_CLASSES_YAML)
        return root, classes

    return build


def make_zip(src: Path, archive: Path, *, wrapper: str = "") -> Path:
    """Zip the folder `src` with its contents under `wrapper/` (as the published archives do)."""
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(src.rglob("*")):
            name = (Path(wrapper) / path.relative_to(src)).as_posix() if wrapper else None
            zf.write(path, name or path.relative_to(src).as_posix())
    return archive


def make_tar(src: Path, archive: Path, *, wrapper: str = "", mode: str = "w:gz") -> Path:
    with tarfile.open(archive, mode) as tar:
        tar.add(src, arcname=wrapper or ".")
    return archive


@pytest.fixture
def archive_makers() -> dict[str, Callable[..., Path]]:
    return {"zip": make_zip, "tar": make_tar}


@pytest.fixture
def samples_dir() -> Path:
    """The real sample files beside the repository (skipped where they are absent)."""
    if not SAMPLES.is_dir():
        pytest.skip(f"real sample files not found at {SAMPLES} (only in the development tree)")
    return SAMPLES.resolve()
