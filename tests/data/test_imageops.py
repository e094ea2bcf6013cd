"""sartm.data.imageops gives exactly what torchvision.transforms.v2 gives (it replaces it only to
keep torchvision's import out of every training and evaluation process)."""

from __future__ import annotations

import pytest
import torch
from torchvision import tv_tensors
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from sartm.data import imageops


@pytest.fixture(params=[(3, 37, 53), (1, 20, 31)], ids=["rgb", "thermal"])
def image(request):
    g = torch.Generator().manual_seed(sum(request.param))
    return torch.randint(0, 256, request.param, dtype=torch.uint8, generator=g)


@pytest.mark.parametrize("factor", [0.5, 0.93, 1.0, 1.37, 1.5])
def test_colour_jitter_matches_torchvision(factor):
    g = torch.Generator().manual_seed(1)
    rgb = torch.randint(0, 256, (3, 29, 41), dtype=torch.uint8, generator=g)
    for ours, theirs in (
        (imageops.adjust_brightness, TF.adjust_brightness),
        (imageops.adjust_contrast, TF.adjust_contrast),
        (imageops.adjust_saturation, TF.adjust_saturation),
    ):
        assert torch.equal(ours(rgb, factor), theirs(rgb, factor)), ours.__name__


def test_blur_flip_and_pad_match_torchvision(image):
    assert torch.equal(imageops.gaussian_blur(image, 3), TF.gaussian_blur(image, [3, 3]))
    assert torch.equal(imageops.hflip(image), TF.hflip(image))
    padded = imageops.pad_right_bottom(image, 5, 3, 0)
    assert torch.equal(padded, TF.pad(image, [0, 0, 5, 3], fill=0))
    assert padded.shape[-2:] == (image.shape[-2] + 3, image.shape[-1] + 5)


@pytest.mark.parametrize("size", [[18, 26], [74, 106], [37, 53], [64, 64]])
def test_resize_matches_torchvision(image, size):
    ours = imageops.resize(image, size)
    theirs = TF.resize(image, size, InterpolationMode.BILINEAR, antialias=True)
    assert torch.equal(ours, theirs)
    label = image[0] % 5
    nearest = imageops.resize(label[None], size, nearest=True)
    assert torch.equal(nearest, TF.resize(tv_tensors.Mask(label[None]), size))
    assert set(nearest.unique().tolist()) <= set(label.unique().tolist())


def test_normalize_matches_torchvision():
    x = torch.rand(3, 8, 9)
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    torch.testing.assert_close(imageops.normalize(x, mean, std), TF.normalize(x, mean, std))


def test_the_transforms_do_not_import_torchvision():
    import subprocess
    import sys

    code = "import sys, sartm.data.dataset; print('torchvision' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
