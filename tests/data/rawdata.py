"""Builders of tiny raw datasets in each ORIGINAL layout (32x24 images) and of archives.

Every builder writes deterministic pixels, so tests can compare the prepared output with the
source arrays exactly (`source_arrays`). conftest.py exposes them as fixtures; test modules in
this folder may also import this module directly (`from rawdata import ...`).
"""

from __future__ import annotations

import tarfile
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

WIDTH, HEIGHT = 32, 24
SAMPLES = Path(__file__).resolve().parents[2] / ".." / "shared" / "samples"

MFNET_IDS = {"train": ["00001D", "00002N"], "val": ["00003D"], "test": ["00004D", "00005N"]}
PST900_IDS = {"train": ["31_bag1a_frame01", "31_bag1a_frame02"], "test": ["32_bag2_frame01"]}
FMB_IDS = {"train": ["00001", "00002"], "test": ["00101", "00102"]}
CUSTOM_IDS = {"train": ["a1", "a2"], "val": ["b1"], "test": ["c1"]}
CUSTOM_CLASSES_YAML = """\
- {name: background, color: [0, 0, 0]}
- {name: person, color: [255, 0, 0]}
- {name: car, color: [0, 0, 255]}
"""


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


def build_mfnet(
    root: Path,
    ids: dict[str, list[str]] | None = None,
    *,
    day_night_lists: bool = True,
    with_extension: bool = False,
) -> Path:
    """MFNet: images/<id>.png RGBA (4th channel = thermal), labels/, split and day/night lists."""
    ids = ids or MFNET_IDS
    for sample_id in [i for split in ids.values() for i in split]:
        arrays = source_arrays(sample_id, 9)
        save(root / "images" / f"{sample_id}.png", np.dstack([arrays["rgb"], arrays["thermal"]]))
        save(root / "labels" / f"{sample_id}.png", arrays["label"])
    suffix = ".png" if with_extension else ""
    for split, split_ids in ids.items():
        (root / f"{split}.txt").write_text("".join(f"{i}{suffix}\n" for i in split_ids))
    if day_night_lists:
        test = ids.get("test", [])
        (root / "test_day.txt").write_text("".join(f"{i}\n" for i in test if i.endswith("D")))
        (root / "test_night.txt").write_text("".join(f"{i}\n" for i in test if i.endswith("N")))
    return root


def build_split_layout(
    root: Path,
    ids: dict[str, list[str]],
    folders: tuple[str, str, str],
    num_classes: int,
    *,
    thermal_channels: int = 0,
) -> Path:
    """{split}/{rgb folder, thermal folder, label folder}/<id>.png with source_arrays pixels."""
    rgb_dir, thermal_dir, label_dir = folders
    for split, split_ids in ids.items():
        for sample_id in split_ids:
            arrays = source_arrays(sample_id, num_classes)
            save(root / split / rgb_dir / f"{sample_id}.png", arrays["rgb"])
            thermal = arrays["thermal"]
            if thermal_channels == 3:
                thermal = np.dstack([thermal] * 3)
            save(root / split / thermal_dir / f"{sample_id}.png", thermal)
            save(root / split / label_dir / f"{sample_id}.png", arrays["label"])
    return root


def build_pst900(root: Path, ids: dict[str, list[str]] | None = None) -> Path:
    """PST900: {train,test}/{rgb,thermal,labels}/ plus the ignored 16-bit depth/, thermal_raw/."""
    ids = ids or PST900_IDS
    build_split_layout(root, ids, ("rgb", "thermal", "labels"), 5)
    raw16 = np.full((HEIGHT, WIDTH), 40000, np.uint16)
    for split, split_ids in ids.items():
        for sample_id in split_ids:
            for extra in ("depth", "thermal_raw"):
                path = root / split / extra / f"{sample_id}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(raw16).save(path)
    return root


def build_fmb(root: Path, ids: dict[str, list[str]] | None = None) -> Path:
    """FMB: {train,test}/{Visible,Infrared (3 equal grey channels),Label}/ plus colour labels."""
    ids = ids or FMB_IDS
    build_split_layout(root, ids, ("Visible", "Infrared", "Label"), 15, thermal_channels=3)
    for split, split_ids in ids.items():
        for sample_id in split_ids:  # rendered labels: ignored by prepare
            save(root / split / "color" / f"{sample_id}.png", pixels(_seed(sample_id), 3))
    return root


def build_custom(root: Path, ids: dict[str, list[str]] | None = None) -> tuple[Path, Path]:
    """custom: {train,val,test}/{rgb,thermal,label}/ and a YAML class file beside `root`."""
    build_split_layout(root, ids or CUSTOM_IDS, ("rgb", "thermal", "label"), 3)
    classes = root.parent / "classes.yaml"
    classes.write_text(CUSTOM_CLASSES_YAML)
    return root, classes


def make_zip(src: Path, archive: Path, *, wrapper: str = "") -> Path:
    """Zip the folder `src` with its contents under `wrapper/` (as published archives do)."""
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(src.rglob("*")):
            zf.write(path, (Path(wrapper) / path.relative_to(src)).as_posix())
    return archive


def make_tar(src: Path, archive: Path, *, wrapper: str = "", mode: str = "w:gz") -> Path:
    """Tar the folder `src` under `wrapper/` (or at the top, as "./...")."""
    with tarfile.open(archive, mode) as tar:
        tar.add(src, arcname=wrapper or ".")
    return archive
