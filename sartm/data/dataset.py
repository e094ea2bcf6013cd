"""The torch Dataset over the common layout (meta.json + manifest.csv + PNGs), and its factory.

Items are dicts: `rgb` float (3,H,W), `thermal` float (3,H,W) (one channel replicated), `label`
long (H,W) (255 = ignore / padding), `id` str, and `height`/`width`: the top-left region of the
tensors that holds image content, i.e. the original image size for evaluation (unless
`eval_resize`), used to un-pad predictions before scoring.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from sartm.data.common import MANIFEST_NAME, META_NAME, DataError, load_meta, read_manifest
from sartm.data.spec import IGNORE_INDEX
from sartm.data.transforms import EvalTransform, Normalisation, TrainTransform
from sartm.paths import processed_dir

BLANKABLE = ("rgb", "thermal")
# PIL modes accepted per modality ("P" labels: the palette indices are the class ids).
MODES = {"rgb": ("RGB",), "thermal": ("L",), "label": ("L", "P")}

Transform = Callable[[dict[str, torch.Tensor]], dict[str, Any]]


def read_png(path: Path, modality: str) -> np.ndarray:
    """Decode one image of the common layout; DataError naming the file when it is unusable."""
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode not in MODES[modality]:
                raise DataError(
                    f"{path}: {modality} image has PIL mode {im.mode!r}, expected "
                    f"{' or '.join(MODES[modality])} (8-bit)"
                )
            return np.array(im)
    except FileNotFoundError as exc:
        raise DataError(f"{path}: missing {modality} image listed in {MANIFEST_NAME}") from exc
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"{path}: cannot read {modality} image ({exc})") from exc


class RGBTDataset(Dataset):
    """One split of a dataset in the common layout.

    `subset` keeps only rows whose manifest subset matches (MFNet `day` / `night`);
    `max_samples` keeps the first N rows (manifest order: sorted by id); `blank` ("rgb" or
    "thermal") zeroes that raw modality before the transform, for modality-robustness
    evaluation (a blanked image is black, then normalised like any other).
    """

    def __init__(
        self,
        root: str | Path,
        split: str,
        transform: Transform | None = None,
        max_samples: int | None = None,
        subset: str | None = None,
        *,
        blank: str | None = None,
    ) -> None:
        self.root = Path(root)
        self.split = split
        self.meta: dict[str, Any] = load_meta(self.root)
        rows = read_manifest(self.root)
        splits = sorted({r["split"] for r in rows})
        self.rows = [r for r in rows if r["split"] == split]
        if not self.rows:
            raise DataError(
                f"{self.root / MANIFEST_NAME}: no samples in split {split!r}; "
                f"splits: {', '.join(splits) or 'none'}"
            )
        if subset is not None:
            names = sorted({r["subset"] for r in self.rows if r["subset"]})
            self.rows = [r for r in self.rows if r["subset"] == subset]
            if not self.rows:
                raise DataError(
                    f"{self.root / MANIFEST_NAME}: no {split!r} samples in subset {subset!r}; "
                    f"subsets: {', '.join(names) or 'none'}"
                )
        if max_samples is not None:
            if max_samples < 1:
                raise ValueError(f"max_samples must be >= 1, got {max_samples}")
            self.rows = self.rows[:max_samples]
        if blank is not None and blank not in BLANKABLE:
            raise ValueError(f"blank must be one of {BLANKABLE} or None, got {blank!r}")
        self.blank = blank
        self.transform = transform or EvalTransform(
            eval_size=None, normalisation=Normalisation.from_meta(self.meta, "authors")
        )

    # --- what the dataset is -------------------------------------------------------------
    @property
    def classes(self) -> list[str]:
        return list(self.meta["classes"])

    @property
    def num_classes(self) -> int:
        return len(self.meta["classes"])

    @property
    def palette(self) -> list[list[int]]:
        return [list(c) for c in self.meta["palette"]]

    @property
    def ignore_index(self) -> int:
        return int(self.meta.get("ignore_index", IGNORE_INDEX))

    @property
    def synthetic(self) -> bool:
        return bool(self.meta.get("synthetic", False))

    @property
    def ids(self) -> list[str]:
        return [r["id"] for r in self.rows]

    def subset_ids(self, name: str) -> list[str]:
        """Ids of this split's samples in subset `name` (MFNet: `day`, `night`); [] if none."""
        return [r["id"] for r in self.rows if r["subset"] == name]

    @property
    def subsets(self) -> list[str]:
        return sorted({r["subset"] for r in self.rows if r["subset"]})

    # --- items ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.rows)

    def read(self, index: int) -> dict[str, Any]:
        """The raw sample: uint8 `rgb` (3,H,W), `thermal` (1,H,W), `label` (H,W), and `id`."""
        row = self.rows[index]
        arrays = {m: read_png(self.root / row[m], m) for m in ("rgb", "thermal", "label")}
        sizes = {m: a.shape[:2] for m, a in arrays.items()}
        if len(set(sizes.values())) != 1:
            detail = ", ".join(f"{row[m]} is {s[1]}x{s[0]}" for m, s in sizes.items())
            raise DataError(f"{self.root}: sample {row['id']}: image sizes differ: {detail}")
        return {
            "rgb": torch.from_numpy(arrays["rgb"]).permute(2, 0, 1).contiguous(),
            "thermal": torch.from_numpy(arrays["thermal"])[None],
            "label": torch.from_numpy(arrays["label"]),
            "id": row["id"],
        }

    def __getitem__(self, index: int | tuple[int, int]) -> dict[str, Any]:
        """`dataset[i]`: the transform draws from torch's global RNG (if it is random at all).
        `dataset[(i, seed)]` (what `sampling.SeededSampler` yields): it draws from a fresh
        generator seeded with `seed` instead, so the item is a pure function of (i, seed); the
        transform must then accept `generator=` (TrainTransform does)."""
        seed = None
        if isinstance(index, tuple):
            index, seed = index
        raw = self.read(index)
        if self.blank is not None:
            raw[self.blank] = torch.zeros_like(raw[self.blank])
        sample = {k: raw[k] for k in ("rgb", "thermal", "label")}
        if seed is None:
            item = self.transform(sample)
        else:
            item = self.transform(sample, generator=torch.Generator().manual_seed(seed))
        item["id"] = raw["id"]
        return item


def build_dataset(
    cfg: Any,
    split: str,
    train: bool,
    *,
    subset: str | None = None,
    blank: str | None = None,
) -> RGBTDataset:
    """The dataset a run reads: `processed_dir(cfg.data.dataset)` under `cfg.data.root`, with
    the training augmentation (`train=True`) or the evaluation transform, the normalisation
    `cfg.data.normalisation` and the `cfg.data.max_samples` cap."""
    data = cfg.data
    root = processed_dir(data.dataset, Path(data.root))
    meta = load_meta(root)
    if meta.get("name", data.dataset) != data.dataset:
        raise DataError(
            f"{root / META_NAME}: holds dataset {meta.get('name')!r}, but the run reads "
            f"{data.dataset!r}; re-create it (sartm data prepare / synth)"
        )
    norm = Normalisation.from_meta(meta, data.normalisation, source=str(root / META_NAME))
    transform: Transform = (
        TrainTransform.from_config(data, norm) if train else EvalTransform.from_config(data, norm)
    )
    return RGBTDataset(
        root, split, transform=transform, max_samples=data.max_samples, subset=subset, blank=blank
    )
