"""The image operations of the training augmentation, in plain torch, equal to torchvision's.

Each function gives exactly what `torchvision.transforms.v2.functional` gives for a uint8
(C, H, W) tensor (tests/data/test_imageops.py compares them). Written here because importing
torchvision costs about 1.4 s per process (it imports its models, ops and datasets), and the
pipeline starts one process per training job and one per evaluation.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

GREY_WEIGHTS = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale


def _blend(image: torch.Tensor, other: torch.Tensor, ratio: float) -> torch.Tensor:
    """ratio * image + (1 - ratio) * other, clamped to [0, 255] and truncated back to uint8."""
    return image.mul(ratio).add_(other, alpha=1.0 - ratio).clamp_(0, 255).to(image.dtype)


def _grey(image: torch.Tensor) -> torch.Tensor:
    r, g, b = image.unbind(dim=-3)
    wr, wg, wb = GREY_WEIGHTS
    return r.mul(wr).add_(g, alpha=wg).add_(b, alpha=wb).unsqueeze(-3).floor_()


def adjust_brightness(image: torch.Tensor, factor: float) -> torch.Tensor:
    return image.mul(factor).clamp_(0, 255).to(image.dtype)


def adjust_contrast(image: torch.Tensor, factor: float) -> torch.Tensor:
    mean = torch.mean(_grey(image), dim=(-3, -2, -1), keepdim=True)
    return _blend(image, mean, factor)


def adjust_saturation(image: torch.Tensor, factor: float) -> torch.Tensor:
    return _blend(image, _grey(image), factor)


def hflip(image: torch.Tensor) -> torch.Tensor:
    return image.flip(-1)


def gaussian_blur(image: torch.Tensor, kernel_size: int = 3) -> torch.Tensor:
    """torchvision's default sigma for the kernel size, reflect padding, rounded back."""
    sigma = kernel_size * 0.15 + 0.35
    lim = (kernel_size - 1) / (2.0 * math.sqrt(2.0))
    x = torch.linspace(-lim, lim, steps=kernel_size, dtype=torch.float32)
    k1 = torch.softmax(x.div(sigma).pow(2).neg(), dim=0)
    kernel = (k1.unsqueeze(-1) * k1).expand(image.shape[-3], 1, kernel_size, kernel_size)
    half = kernel_size // 2
    out = F.pad(image.unsqueeze(0).float(), [half] * 4, mode="reflect")
    out = F.conv2d(out, kernel, groups=image.shape[-3]).squeeze(0)
    return out.round_().to(image.dtype)


def resize(image: torch.Tensor, size: list[int], *, nearest: bool = False) -> torch.Tensor:
    """Bilinear with antialiasing (images) or nearest (labels: no new values) to (h, w)."""
    if list(image.shape[-2:]) == list(size):
        return image
    batch = image.reshape(-1, *image.shape[-3:])
    if nearest:
        out = F.interpolate(batch, size=size, mode="nearest")
    else:
        out = F.interpolate(batch, size=size, mode="bilinear", align_corners=False, antialias=True)
    return out.reshape(*image.shape[:-2], *size)


def pad_right_bottom(image: torch.Tensor, right: int, bottom: int, fill: float) -> torch.Tensor:
    return F.pad(image, [0, right, 0, bottom], value=fill)


def normalize(image: torch.Tensor, mean: list[float], std: list[float]) -> torch.Tensor:
    """(image - mean) / std per channel of a float image (a new tensor)."""
    m = torch.as_tensor(mean, dtype=image.dtype).view(-1, 1, 1)
    s = torch.as_tensor(std, dtype=image.dtype).view(-1, 1, 1)
    return image.sub(m).div_(s)
