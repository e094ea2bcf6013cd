"""Joint RGB / thermal / label transforms: the authors' training augmentation, their evaluation
protocol, and normalisation.

A transform takes the decoded sample `{"rgb": uint8 (3,H,W), "thermal": uint8 (1,H,W),
"label": uint8 (H,W)}` and returns `{"rgb": float (3,h,w), "thermal": float (3,h,w) (the single
channel replicated), "label": long (h,w), "height": int, "width": int}` where height/width give
the top-left region of the tensors that holds image content (the rest is padding: image 0,
label 255). Geometry is applied identically to all three; labels are only ever resized with
nearest-neighbour and never gain new values other than the ignore index. The operations are
torchvision's, reproduced exactly by `sartm.data.imageops` without importing torchvision.

Randomness comes only from a torch generator, never from Python's `random` or NumPy: the one
passed to the call (`transform(sample, generator=g)`), else torch's global one. The training
loader passes a fresh generator per sample, seeded from (train.seed, epoch, sample index)
(`sartm.data.sampling`), so an augmentation does not depend on which worker draws it. Without
one, `torch.manual_seed` reproduces an augmentation and DataLoader workers (which reseed torch per
worker) draw different ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from sartm.data import imageops as F
from sartm.data.common import AUTHORS_NORMALISATION, DataError
from sartm.data.spec import IGNORE_INDEX

NORMALISATIONS = ("authors", "computed")
PAD_MULTIPLE = 32  # Hiera's total stride: eval inputs larger than eval_size are padded to this


@dataclass(frozen=True)
class Normalisation:
    """Per-channel mean/std on the [0, 1] scale. `authors`: RGB ImageNet mean/std and thermal
    /255 only (mean 0, std 1); `computed`: the training-split statistics in meta.json."""

    rgb_mean: tuple[float, float, float]
    rgb_std: tuple[float, float, float]
    thermal_mean: tuple[float, float, float]
    thermal_std: tuple[float, float, float]

    @classmethod
    def authors(cls) -> Normalisation:
        return cls(**{k: tuple(v) for k, v in AUTHORS_NORMALISATION.items()})

    @classmethod
    def from_meta(
        cls, meta: dict[str, Any], mode: str = "authors", source: str = "meta.json"
    ) -> Normalisation:
        """Read the statistics named `mode` from a dataset's meta.json (`source` names the file)."""
        if mode not in NORMALISATIONS:
            raise DataError(
                f"normalisation {mode!r} is not allowed; allowed: {', '.join(NORMALISATIONS)}"
            )
        stats = meta.get("normalisation", {}).get(mode)
        if stats is None:
            if mode == "authors":
                return cls.authors()
            raise DataError(
                f"{source}: no 'normalisation.{mode}' statistics; re-prepare the dataset"
            )
        try:
            values = {k: tuple(float(x) for x in stats[k]) for k in AUTHORS_NORMALISATION}
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"{source}: normalisation.{mode} is malformed ({exc})") from exc
        if (
            any(len(v) != 3 for v in values.values())
            or min(values["rgb_std"] + values["thermal_std"]) <= 0
        ):
            raise DataError(
                f"{source}: normalisation.{mode} needs 3 means and 3 positive stds each"
            )
        return cls(**values)

    def __call__(
        self, rgb: torch.Tensor, thermal: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 RGB (3,H,W) and thermal (1,H,W) -> float (3,H,W) each, thermal replicated."""
        rgb = F.normalize(rgb.float().div_(255.0), list(self.rgb_mean), list(self.rgb_std))
        thermal = thermal.float().div_(255.0)
        if len(set(self.thermal_mean)) == 1 and len(set(self.thermal_std)) == 1:
            # the usual case (one channel, replicated): normalise once, then copy
            thermal = thermal.sub_(self.thermal_mean[0]).div_(self.thermal_std[0])
            return rgb, thermal.expand(3, -1, -1).contiguous()
        thermal = thermal.expand(3, -1, -1)
        return rgb, F.normalize(thermal, list(self.thermal_mean), list(self.thermal_std))


def _rand(generator: torch.Generator | None) -> float:
    return float(torch.rand((), generator=generator))


def _uniform(lo: float, hi: float, generator: torch.Generator | None) -> float:
    return lo + (hi - lo) * _rand(generator)


def _finish(
    rgb: torch.Tensor,
    thermal: torch.Tensor,
    label: torch.Tensor,
    height: int,
    width: int,
    normalisation: Normalisation,
) -> dict[str, Any]:
    rgb, thermal = normalisation(rgb, thermal)
    return {
        "rgb": rgb,
        "thermal": thermal,
        "label": label.reshape(label.shape[-2:]).long(),
        "height": height,
        "width": width,
    }


def _resize(rgb: torch.Tensor, thermal: torch.Tensor, label: torch.Tensor, size: list[int]):
    """Bilinear for the images, nearest for the label (a Mask)."""
    return (
        F.resize(rgb, size),
        F.resize(thermal, size),
        F.resize(label, size, nearest=True),
    )


def _pad_to(
    rgb: torch.Tensor,
    thermal: torch.Tensor,
    label: torch.Tensor,
    height: int,
    width: int,
    ignore_index: int,
):
    """Pad right and bottom to (height, width): images with 0, the label with the ignore index."""
    h, w = label.shape[-2:]
    right, bottom = width - w, height - h
    if right == 0 and bottom == 0:
        return rgb, thermal, label
    return (
        F.pad_right_bottom(rgb, right, bottom, 0),
        F.pad_right_bottom(thermal, right, bottom, 0),
        F.pad_right_bottom(label, right, bottom, ignore_index),
    )


def _as_tensors(sample: dict[str, torch.Tensor]):
    rgb, thermal, label = sample["rgb"], sample["thermal"], sample["label"]
    if rgb.dtype != torch.uint8 or thermal.dtype != torch.uint8:
        raise TypeError("transforms expect uint8 RGB (3,H,W) and thermal (1,H,W) tensors")
    if thermal.ndim == 2:
        thermal = thermal[None]
    if not rgb.shape[-2:] == thermal.shape[-2:] == label.shape[-2:]:
        raise ValueError(
            f"RGB, thermal and label sizes differ: {tuple(rgb.shape)}, {tuple(thermal.shape)}, "
            f"{tuple(label.shape)}"
        )
    return rgb, thermal, label.reshape(1, *label.shape[-2:])


@dataclass
class TrainTransform:
    """The authors' training augmentation, in their order (semseg/augmentations_mm.py):

    1. RGB colour jitter with probability `jitter_p`: brightness, contrast and saturation, each
       by a factor drawn from [0.5, 1.5], in that order;
    2. horizontal flip of RGB, thermal and label with probability `flip_p`;
    3. RGB Gaussian blur 3x3 (sigma 0.8, torchvision's default for that kernel), prob. `blur_p`;
    4. random resized crop: r drawn from `scale_range`; the image is resized by
       min(4 r crop / long side, r crop / short side), i.e. its short side becomes r * crop_size
       (the scale is relative to the crop, as in the authors' RandomResizedCrop, not to the
       image); then a random crop_size x crop_size window, padded right/bottom with 0 (images)
       and 255 (label) where the resized image is smaller. The authors' crop offset can overshoot
       the margin by one pixel (`randint(0, margin + 1)`); ours stays inside it.
    """

    crop_size: int
    normalisation: Normalisation = field(default_factory=Normalisation.authors)
    scale_range: tuple[float, float] = (0.5, 2.0)
    flip_p: float = 0.5
    jitter_p: float = 0.2
    blur_p: float = 0.2
    ignore_index: int = IGNORE_INDEX

    @classmethod
    def from_config(cls, data: Any, normalisation: Normalisation) -> TrainTransform:
        """From `cfg.data` (crop_size, scale_range, flip_p, jitter_p, blur_p)."""
        return cls(
            crop_size=data.crop_size,
            normalisation=normalisation,
            scale_range=tuple(data.scale_range),
            flip_p=data.flip_p,
            jitter_p=data.jitter_p,
            blur_p=data.blur_p,
        )

    def __call__(
        self, sample: dict[str, torch.Tensor], generator: torch.Generator | None = None
    ) -> dict[str, Any]:
        """Augment `sample`, drawing from `generator`, else from the global RNG."""
        g = generator
        rgb, thermal, label = _as_tensors(sample)
        if _rand(g) < self.jitter_p:
            rgb = F.adjust_brightness(rgb, _uniform(0.5, 1.5, g))
            rgb = F.adjust_contrast(rgb, _uniform(0.5, 1.5, g))
            rgb = F.adjust_saturation(rgb, _uniform(0.5, 1.5, g))
        if _rand(g) < self.flip_p:
            rgb, thermal, label = F.hflip(rgb), F.hflip(thermal), F.hflip(label)
        if _rand(g) < self.blur_p:
            rgb = F.gaussian_blur(rgb, 3)
        return self.resized_crop(rgb, thermal, label, g)

    def resized_crop(
        self,
        rgb: torch.Tensor,
        thermal: torch.Tensor,
        label: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> dict[str, Any]:
        g, crop = generator, self.crop_size
        h, w = label.shape[-2:]
        r = _uniform(*self.scale_range, g)
        factor = min(int(4 * crop * r) / max(h, w), int(crop * r) / min(h, w))
        nh, nw = max(1, int(h * factor + 0.5)), max(1, int(w * factor + 0.5))
        rgb, thermal, label = _resize(rgb, thermal, label, [nh, nw])
        y0 = int(torch.randint(0, max(nh - crop, 0) + 1, (), generator=g))
        x0 = int(torch.randint(0, max(nw - crop, 0) + 1, (), generator=g))
        window = (slice(None), slice(y0, y0 + crop), slice(x0, x0 + crop))
        rgb, thermal, label = rgb[window], thermal[window], label[window]
        vh, vw = label.shape[-2:]
        rgb, thermal, label = _pad_to(rgb, thermal, label, crop, crop, self.ignore_index)
        return _finish(rgb, thermal, label, vh, vw, self.normalisation)


@dataclass
class EvalTransform:
    """The authors' evaluation protocol: no resizing, zero-pad right/bottom to an `eval_size`
    square (label padded with 255), single scale. A side longer than `eval_size` is padded to
    the next multiple of 32 instead (the authors' pad would crop it). `resize=True` (the
    `eval_resize` option) first resizes the image so its long side is `eval_size` (aspect kept;
    label by nearest neighbour), so metrics are then computed at that resolution.
    `eval_size=None` only normalises."""

    eval_size: int | None
    normalisation: Normalisation = field(default_factory=Normalisation.authors)
    resize: bool = False
    ignore_index: int = IGNORE_INDEX

    @classmethod
    def from_config(cls, data: Any, normalisation: Normalisation) -> EvalTransform:
        """From `cfg.data` (eval_size, eval_resize)."""
        return cls(eval_size=data.eval_size, normalisation=normalisation, resize=data.eval_resize)

    def padded_size(self, height: int, width: int) -> tuple[int, int]:
        """The (height, width) an input of this size is padded to."""
        if self.eval_size is None:
            return height, width

        def side(n: int) -> int:
            return (
                self.eval_size
                if n <= self.eval_size
                else math.ceil(n / PAD_MULTIPLE) * PAD_MULTIPLE
            )

        return side(height), side(width)

    def __call__(self, sample: dict[str, torch.Tensor]) -> dict[str, Any]:
        rgb, thermal, label = _as_tensors(sample)
        h, w = label.shape[-2:]
        if self.resize and self.eval_size is not None and max(h, w) != self.eval_size:
            factor = self.eval_size / max(h, w)
            h, w = max(1, round(h * factor)), max(1, round(w * factor))
            rgb, thermal, label = _resize(rgb, thermal, label, [h, w])
        rgb, thermal, label = _pad_to(
            rgb, thermal, label, *self.padded_size(h, w), self.ignore_index
        )
        return _finish(rgb, thermal, label, h, w, self.normalisation)
